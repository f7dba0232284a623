"""Generations like a Nix profile: `<venv>.generations/<identity>/{venv,src,receipt.json,logs}`,
`--venv` and `--src` symlinks switched atomically (rename of a temporary symlink), and a
profile.json history that rollback walks back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vllm_lock import receipt as receipts
from vllm_lock.errors import PreflightError, UsageError
from vllm_lock.plan import Layout


def check_links(layout: Layout) -> None:
    """An old Phoenix install (a real directory at --venv or --src) is never destroyed silently."""
    for link, flag in ((layout.venv_link, "--venv"), (layout.src_link, "--src")):
        if link.exists() and not link.is_symlink():
            raise PreflightError(
                f"{link} ({flag}) is a real directory, not a vllm-lock generation link: move it aside "
                f"(e.g. `mv {link} {link}.phoenix-old`) or pass another {flag}; nothing was changed"
            )


def active(layout: Layout) -> Path | None:
    """The generation directory --venv points into, or None."""
    if not layout.venv_link.is_symlink():
        return None
    target = Path(os.readlink(layout.venv_link))
    if not target.is_absolute():
        target = layout.venv_link.parent / target
    generation = target.parent
    if generation.parent.resolve() != layout.generations.resolve():
        return None
    return generation


def _switch_link(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)  # atomic: the old link stays valid until this instant


def switch(layout: Layout, generation: Path) -> None:
    """Point --venv and --src at generation (venv first: it is what running services use)."""
    layout.venv_link.parent.mkdir(parents=True, exist_ok=True)
    layout.src_link.parent.mkdir(parents=True, exist_ok=True)
    _switch_link(layout.venv_link, generation / "venv")
    _switch_link(layout.src_link, generation / "src")
    history = read_profile(layout)
    history.append(generation.name)
    receipts.write_json_atomic(layout.profile, json.dumps({"history": history[-50:]}, indent=2) + "\n")


def read_profile(layout: Layout) -> list[str]:
    try:
        data = json.loads(layout.profile.read_text(encoding="utf-8"))
        return [str(x) for x in data.get("history", [])]
    except (OSError, ValueError):
        return []


def complete(layout: Layout, identity: str) -> bool:
    return receipts.read(layout.generation(identity)) is not None


def rollback_target(layout: Layout) -> Path:
    """The most recent complete generation before the active one in the history."""
    current = active(layout)
    if current is None:
        raise UsageError(f"{layout.venv_link} is not a vllm-lock generation link: nothing to roll back")
    for identity in reversed(read_profile(layout)):
        if identity != current.name and complete(layout, identity):
            return layout.generation(identity)
    raise UsageError(f"no earlier complete generation in {layout.generations} to roll back to")
