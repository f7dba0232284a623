"""Generations like a Nix profile: `<venv>.generations/<identity>/{venv,src,receipt.json,logs}`,
`--venv` and `--src` symlinks switched together (rename of temporary symlinks), and a
profile.json history that rollback walks back. One install or rollback at a time holds
`<generations>/.install.lock`; whatever decides what to do is read while holding it."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vllm_lock import plan
from vllm_lock import receipt as receipts
from vllm_lock.errors import InstallError, OutputError, PreflightError, UsageError
from vllm_lock.plan import Layout
from vllm_lock.shell import files

LOCK_NAME = ".install.lock"


def _real(path: Path) -> Path:
    """path with its directory resolved (the path itself may be one of our symlinks)."""
    return Path(os.path.realpath(path.parent)) / path.name


def check_layout(layout: Layout) -> None:
    """Everything about --venv and --src that would fail the switch at the end, checked before
    anything is written: the two can coexist, no real directory is in the way, and the link
    directories and the generations directory can be written."""
    for flag, link in (("--venv", layout.venv_link), ("--src", layout.src_link)):
        named = plan.link_path_problem(flag, link)
        if named:
            raise UsageError(named)
    problem = plan.layout_problem(
        venv_link=_real(layout.venv_link), src_link=_real(layout.src_link), generations=_real(layout.generations)
    )
    if problem:
        raise UsageError(problem)
    check_links(layout)
    check_writable_dir(layout.venv_link.parent, "--venv's directory")
    check_writable_dir(layout.src_link.parent, "--src's directory")
    check_writable_dir(layout.generations, "the generations directory")


def check_writable_dir(directory: Path, what: str) -> None:
    """directory is (or can be created as) a directory we can write in; OutputError otherwise.
    Tried with a real file, not os.access: read-only mounts and immutable directories count."""
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == directory:
            raise OutputError(f"{directory} ({what}) is not a directory; nothing was changed")
        raise OutputError(f"cannot create {directory} ({what}): {existing} is not a directory; nothing was changed")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".vllm-lock-probe-")
    except OSError as exc:
        where = f"{directory} ({what})" if existing == directory else f"{existing} (to create {what} {directory})"
        raise OutputError(f"cannot write in {where}: {exc.strerror or exc}; nothing was changed") from None
    os.close(fd)
    os.unlink(probe)


def check_links(layout: Layout) -> None:
    """An old Phoenix install (a real directory at --venv or --src) is never destroyed silently."""
    for link, flag in ((layout.venv_link, "--venv"), (layout.src_link, "--src")):
        if link.exists() and not link.is_symlink():
            raise PreflightError(
                f"{link} ({flag}) is a real directory, not a vllm-lock generation link: move it aside "
                f"(e.g. `mv {link} {link}.phoenix-old`) or pass another {flag}; nothing was changed"
            )


@contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """One install or rollback at a time per generations directory (released by the kernel on
    SIGKILL). The holder's pid is written into the lock file for the message of the next one."""
    # "a+": opening must not truncate the holder's pid before we know we hold the lock
    with open(directory / LOCK_NAME, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise InstallError(
                f"another vllm-lock install or rollback{who} is running on {directory}: wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def active(layout: Layout) -> Path | None:
    """The generation directory --venv points into, or None."""
    return _active(layout.venv_link, layout.generations)


def _active(venv_link: Path, generations: Path) -> Path | None:
    if not venv_link.is_symlink():
        return None
    target = Path(os.readlink(venv_link))
    if not target.is_absolute():
        target = venv_link.parent / target
    generation = target.parent
    if generation.parent.resolve() != generations.resolve():
        return None
    return generation


def _temp_link(link: Path, target: Path) -> Path:
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    return tmp


def _readlink(link: Path) -> str | None:
    return os.readlink(link) if link.is_symlink() else None


def switch(layout: Layout, generation: Path) -> None:
    """Point --venv and --src at generation, both or neither. Both temporary links are made
    first (what fails on a read-only or full directory), then renamed, venv first (it is what
    running services use); should the second rename fail, the first is put back. A crash
    between the two renames leaves --src behind: `verify` reports it (profile.json names the
    --src link) and a rerun of install, finding its generation complete, switches again."""
    venv_target, src_target = generation / "venv", generation / "src"
    layout.venv_link.parent.mkdir(parents=True, exist_ok=True)
    layout.src_link.parent.mkdir(parents=True, exist_ok=True)
    history = read_profile(layout)
    _write_profile(layout, history)  # records the --src link before either rename
    venv_tmp = _temp_link(layout.venv_link, venv_target)
    try:
        src_tmp = _temp_link(layout.src_link, src_target)
    except OSError as exc:
        venv_tmp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot switch {layout.src_link} (--src): {exc.strerror or exc}; nothing was switched"
        ) from None
    previous_venv = _readlink(layout.venv_link)
    os.replace(venv_tmp, layout.venv_link)
    try:
        os.replace(src_tmp, layout.src_link)
    except OSError as exc:
        src_tmp.unlink(missing_ok=True)
        _put_back(layout.venv_link, previous_venv)
        raise OutputError(
            f"cannot switch {layout.src_link} (--src): {exc.strerror or exc}; "
            f"{layout.venv_link} was switched back, nothing changed"
        ) from None
    history.append(generation.name)
    _write_profile(layout, history)


def _put_back(link: Path, previous: str | None) -> None:
    if previous is None:
        link.unlink(missing_ok=True)
    else:
        os.replace(_temp_link(link, Path(previous)), link)


def _write_profile(layout: Layout, history: list[str]) -> None:
    data = {"history": history[-50:], "src_link": str(layout.src_link)}
    files.write_atomically(layout.profile, json.dumps(data, indent=2) + "\n")


def _profile_data(generations: Path) -> dict[str, object]:
    try:
        data = json.loads((generations / "profile.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_profile(layout: Layout) -> list[str]:
    history = _profile_data(layout.generations).get("history", [])
    return [str(x) for x in history] if isinstance(history, list) else []


def half_switch_problem(venv_link: Path) -> str | None:
    """When the --src link recorded for --venv's generations does not point into the generation
    --venv points into (a switch interrupted between its two renames): what is wrong."""
    generations = venv_link.with_name(venv_link.name + ".generations")
    generation = _active(venv_link, generations)
    src_link = _profile_data(generations).get("src_link")
    if generation is None or not isinstance(src_link, str):
        return None
    src = Path(src_link)
    target = _readlink(src)
    if target is not None and Path(os.path.normpath(src.parent / target)) == generation / "src":
        return None
    return (
        f"{src} (--src) points to {target or 'nothing'}, not to {generation / 'src'}: a switch did not finish "
        f"(rerun install, or rollback)"
    )


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
