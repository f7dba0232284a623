"""show / export: read a lock and present it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_lock import codec, pylock
from vllm_lock.build_identity import build_identity
from vllm_lock.model import ExternalSource, Lock
from vllm_lock.shell import files, lockfiles

if TYPE_CHECKING:  # rich is imported by render: `show --json` and `export` never load it
    from rich.console import Console


def summary(lock: Lock, path: Path) -> dict[str, Any]:
    by_source: dict[str, int] = {}
    for package in lock.packages:
        by_source[package.source] = by_source.get(package.source, 0) + 1
    return {
        "path": str(path),
        "name": lock.name,
        "phase": lock.phase,
        "content-hash": codec.content_hash(lock),
        "build-identity": build_identity(lock),
        "vllm": {"url": lock.vllm.url, "ref": lock.vllm.ref, "commit": lock.vllm.commit,
                 "commit-date": lock.vllm.commit_date},
        "torch": {
            "channel": lock.torch.channel,
            "requested": lock.torch.requested,
            "version": lock.torch.version,
            "date": lock.torch.date,
            "cuda": lock.torch.cuda,
            "companions": {c.name: c.version for c in lock.torch.companions},
        },
        "target": {"python": lock.target.python, "platform": lock.target.platform},
        "build": {
            "cuda-archs": list(lock.build.cuda_archs),
            "flash-attn-version": lock.build.flash_attn_version,
            "target-device": lock.build.target_device,
            "editable": lock.build.editable,
            "env": dict(lock.build.env),
        },
        "layout": {"stripping-script": lock.layout.stripping_script, "mode": lock.layout.stripping_mode},
        "external-sources": {
            s.name: {"ref": s.ref, "commit": s.commit, "override": s.override} for s in lock.external_sources
        },
        "packages": {
            "count": len(lock.packages),
            "by-source": by_source,
            "total-bytes": sum(p.size for p in lock.packages),
            "wheels": sum(len(p.wheels) for p in lock.packages),
            "hashed-by-download": sum(1 for p in lock.packages for w in p.wheels if w.hash_origin == "downloaded"),
            "list": {p.name: p.version for p in lock.packages},
        },
        "provenance": {"tool-version": lock.provenance.tool_version, "uv-version": lock.provenance.uv_version,
                        "resolved-at": lock.provenance.resolved_at},
    }


def render(lock: Lock, path: Path, console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    info = summary(lock, path)
    tuple_table = Table(title=f"lock {lock.name} ({lock.phase}) - {path}", show_header=False)
    tuple_table.add_column("input", style="bold")
    tuple_table.add_column("locked")
    tuple_table.add_row("vLLM", f"{lock.vllm.ref} -> {lock.vllm.commit} ({lock.vllm.commit_date})")
    tuple_table.add_row("repository", lock.vllm.url)
    torch_when = f"nightly {lock.torch.date}" if lock.torch.date else "release"
    tuple_table.add_row("torch", f"{lock.torch.requested} -> {lock.torch.version} ({torch_when}, {lock.torch.cuda})")
    tuple_table.add_row("companions", ", ".join(f"{c.name} {c.version}" for c in lock.torch.companions))
    tuple_table.add_row("target", f"Python {lock.target.python}, {lock.target.platform}")
    tuple_table.add_row("build",
                        f"archs {lock.build.torch_cuda_arch_list}, flash-attn {lock.build.flash_attn_version}, "
                        f"{lock.build.target_device}, {'editable' if lock.build.editable else 'wheel'}")
    tuple_table.add_row("layout", f"{lock.layout.stripping_script} ({lock.layout.stripping_mode}), "
                        f"{len(lock.layout.patched_files)} patched files")
    tuple_table.add_row("external", ", ".join(_external(s) for s in lock.external_sources) or "-")
    tuple_table.add_row("identity", f"content {info['content-hash'][:19]}..., build {info['build-identity']}")
    tuple_table.add_row("provenance", f"vllm-lock {lock.provenance.tool_version}, uv {lock.provenance.uv_version}, "
                        f"{lock.provenance.resolved_at}")
    console.print(tuple_table)
    packages = Table(title=f"{len(lock.packages)} packages, {info['packages']['total-bytes'] / 1e6:.1f} MB")
    for column in ("package", "version", "from", "sha256", "hash"):
        packages.add_column(column)
    for p in lock.packages:
        more = f" +{len(p.wheels) - 1}" if len(p.wheels) > 1 else ""
        packages.add_row(p.name, p.version, p.source, p.wheels[0].sha256[:12] + more,
                         "/".join(sorted({w.hash_origin for w in p.wheels})))
    console.print(packages)


def export(name_or_path: str, output: Path | None) -> Path:
    lock, path = lockfiles.read(name_or_path)
    target = output if output is not None else path.parent / pylock.pylock_filename(lock.name)
    if not (target.name == "pylock.toml" or (target.name.startswith("pylock.") and target.name.endswith(".toml"))):
        from vllm_lock.errors import UsageError

        raise UsageError(f"{target.name}: PEP 751 requires the name pylock.toml or pylock.<name>.toml")
    files.write_output(target, pylock.to_pylock(lock))
    return target


def _external(source: ExternalSource) -> str:
    if source.ref_kind == "commit":
        return f"{source.name}@{source.commit[:9]}"
    return f"{source.name}@{source.ref} ({source.commit[:9]})"
