"""vllm-lock commands: each one parses, calls an action, prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vllm_lock import defaults
from vllm_lock.cli_app import app, command, mirror_settings, run, stdout_console  # noqa: F401  (app: tests drive it)
from vllm_lock.progress import Reporter

# Actions are imported inside the commands: a command loads only what it runs (startup time
# counts in every install, and a no-op install must stay well under 2 s).

@command()
def resolve(
    repo: Annotated[str, typer.Option(help="vLLM git repository URL")] = defaults.DEFAULT_REPO,
    ref: Annotated[str, typer.Option(help="branch, tag or commit SHA")] = "main",
    torch_channel: Annotated[str, typer.Option(help="nightly or release")] = "nightly",
    torch_date: Annotated[str, typer.Option(help="nightly date YYYY-MM-DD or 'latest'")] = "latest",
    torch_version: Annotated[str | None, typer.Option(help="release version, e.g. 2.9.1")] = None,
    cuda: Annotated[str, typer.Option(help="CUDA variant of the torch index")] = "cu128",
    torch_index: Annotated[str | None, typer.Option(help="torch index URL (default: PyTorch's for channel+cuda)")] = None,
    index: Annotated[str, typer.Option(help="general package index (everything but the torch family)")] = defaults.DEFAULT_GENERAL_INDEX,
    arch: Annotated[list[str] | None, typer.Option(help="CUDA arch to build, repeatable (default 12.0)")] = None,
    python: Annotated[str, typer.Option(help="target Python")] = "3.12",
    platform: Annotated[str, typer.Option(help="target platform, e.g. aarch64-manylinux_2_28")] = defaults.DEFAULT_PLATFORM,
    flash_attn_version: Annotated[str, typer.Option(help="VLLM_FLASH_ATTN_VERSION")] = "2",
    target_device: Annotated[str, typer.Option(help="VLLM_TARGET_DEVICE")] = "cuda",
    build_env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE output-affecting build setting, repeatable")] = None,
    no_editable: Annotated[bool, typer.Option("--no-editable", help="install vLLM as a built wheel")] = False,
    name: Annotated[str, typer.Option(help="lock name: writes locks/<name>.lock.toml")] = "dev",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the lock here instead")] = None,
    rehash: Annotated[bool, typer.Option("--rehash", help="download unhashed nightlies again even if their ETag did not change")] = False,
    without: Annotated[list[str] | None, typer.Option(help="leave this torch-family member out on purpose (recorded in the lock), repeatable")] = None,
    no_rust: Annotated[bool, typer.Option("--no-rust", help="leave the commit's Rust frontend out on purpose (recorded in the build recipe)")] = False,
    mirror: Annotated[list[str] | None, typer.Option(help="FROM=TO: fetch URLs starting with FROM from TO instead (git, indexes, wheels; never written to the lock), repeatable; also $VLLM_LOCK_MIRRORS")] = None,
) -> None:
    """Resolve a (vLLM commit, torch nightly, build deps) tuple into a hashed lock."""
    from vllm_lock.actions import resolve as resolve_action

    request = resolve_action.ResolveRequest(
        repo=repo,
        ref=ref,
        torch_channel=torch_channel,  # type: ignore[arg-type]
        torch_date=torch_date,
        torch_version=torch_version,
        cuda=cuda,
        torch_index=torch_index,
        general_index=index,
        archs=tuple(arch or ("12.0",)),
        python=python,
        platform=platform,
        flash_attn_version=flash_attn_version,
        target_device=target_device,
        build_env=resolve_action.parse_build_env(build_env or []),
        editable=not no_editable,
        name=name,
        output=output,
        rehash=rehash,
        without=tuple(without or ()),
        without_rust=no_rust,
        mirrors=mirror_settings(mirror),
    )
    lock, path, changed = resolve_action.resolve(request, Reporter.for_stderr())
    state = "written" if changed else "unchanged"
    print(f"{path}: {state} ({lock.vllm.short_commit}, torch {lock.torch.version}, {len(lock.packages)} packages)")


@command()
def show(
    lock: Annotated[str, typer.Argument(help="lock path or name in locks/")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print a lock's tuple and a package summary."""
    from vllm_lock.actions import show as show_action
    from vllm_lock.shell import lockfiles

    loaded, path = lockfiles.read(lock)
    if as_json:
        print(json.dumps(show_action.summary(loaded, path), indent=2))
    else:
        show_action.render(loaded, path, stdout_console())


@command()
def export(
    lock: Annotated[str, typer.Argument(help="lock path or name in locks/")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: pylock.<name>.toml beside the lock")] = None,
) -> None:
    """Write the lock's Python layer as a PEP 751 pylock (uv pip sync accepts it)."""
    from vllm_lock.actions import show as show_action

    path = show_action.export(lock, output)
    print(path)


@command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the test world and results go")] = Path(".demo"),
) -> None:
    """On the bundled test world (loopback only): resolve -> install -> verify -> vllm --version."""
    from vllm_lock.actions import demo as demo_action

    print(demo_action.run(workdir.resolve(), Reporter.for_stderr()))


# Commands of the other areas register themselves on import.
from vllm_lock import cli_cache, cli_install, cli_lifecycle  # noqa: E402,F401


def main() -> None:
    run()


if __name__ == "__main__":
    main()
