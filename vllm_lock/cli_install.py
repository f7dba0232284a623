"""install / verify / rollback / build-check commands (installer area)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from vllm_lock.cli_app import command, mirror_settings, report_error
from vllm_lock.defaults import DEFAULT_SRC, DEFAULT_VENV
from vllm_lock.errors import ExitCode, UsageError, VllmLockError
from vllm_lock.progress import Reporter


def _min_free_disk() -> int | None:
    value = os.environ.get("VLLM_LOCK_MIN_FREE_DISK")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"VLLM_LOCK_MIN_FREE_DISK={value!r} is not a number of bytes") from None


def _jobs_setting(option: str | None, flag: str, variable: str) -> int | None:
    """--max-jobs / --nvcc-threads, else $MAX_JOBS / $NVCC_THREADS (empty counts as unset):
    a positive integer, or a usage error naming where the bad value came from."""
    from vllm_lock import plan

    if option is not None:
        value, origin = option, flag
    elif os.environ.get(variable, "").strip():
        value, origin = os.environ[variable], f"${variable}"
    else:
        return None
    number = plan.positive_int(value)
    if number is None:
        raise UsageError(f"{origin} must be a positive integer, got {value!r}")
    return number


@command()
def install(
    lock: Annotated[str, typer.Argument(help="lock path or name in locks/")],
    venv: Annotated[Path, typer.Option(help="environment link (a symlink to the active generation's venv)")] = DEFAULT_VENV,
    src: Annotated[Path, typer.Option(help="source link (a symlink to the active generation's checkout)")] = DEFAULT_SRC,
    no_editable: Annotated[bool, typer.Option("--no-editable", help="install vLLM as a built wheel")] = False,
    # str, not int: a bad value is our one-line usage error, not click's usage block
    max_jobs: Annotated[str | None, typer.Option(help="MAX_JOBS (default: from CPUs and memory, or $MAX_JOBS)")] = None,
    nvcc_threads: Annotated[str | None, typer.Option(help="NVCC_THREADS (default: $NVCC_THREADS, the lock's, else 2)")] = None,
    allow_python_download: Annotated[bool, typer.Option(help="let uv download the locked Python if missing")] = False,
    require_signed: Annotated[bool, typer.Option("--require-signed", help="refuse a lock without a good signature by a trusted key")] = False,
    trusted_keys: Annotated[Path | None, typer.Option("--trusted-keys", help="allowed_signers file for --require-signed")] = None,
    skip_gpu_check: Annotated[bool, typer.Option("--skip-gpu-check", help="build for other machines' GPUs: do not check this machine's GPUs and driver against the lock")] = False,
    crate_registry: Annotated[str | None, typer.Option("--crate-registry", help="where the lock's Rust crates are fetched: <URL>/<name>/<name>-<version>.crate (default: $VLLM_LOCK_CRATE_REGISTRY, else static.crates.io)")] = None,
    mirror: Annotated[list[str] | None, typer.Option(help="FROM=TO: fetch URLs starting with FROM from TO instead (git, indexes, wheels; never written to the lock), repeatable; also $VLLM_LOCK_MIRRORS")] = None,
    from_bundle: Annotated[Path | None, typer.Option("--from-bundle", help="import this offline bundle (vllm-lock bundle) into the cache first: no network needed")] = None,
) -> None:
    """Build the locked environment as a new generation, verify it, switch --venv/--src to it."""
    from vllm_lock.actions import verify_lock

    verified = verify_lock.require_signed(lock, required=require_signed, trusted=trusted_keys)
    from vllm_lock.actions import install as install_action
    from vllm_lock.shell.store import cache_root

    jobs = _jobs_setting(max_jobs, "--max-jobs", "MAX_JOBS")
    threads = _jobs_setting(nvcc_threads, "--nvcc-threads", "NVCC_THREADS")
    result = install_action.install(
        install_action.InstallRequest(
            lock=lock,
            verified=verified,
            venv=venv,
            src=src,
            editable=False if no_editable else None,
            max_jobs=jobs,
            nvcc_threads=threads,
            allow_python_download=allow_python_download,
            min_free_disk=_min_free_disk(),
            cache=cache_root(),
            skip_gpu_check=skip_gpu_check,
            crate_registry=crate_registry or os.environ.get("VLLM_LOCK_CRATE_REGISTRY") or install_action.DEFAULT_CRATE_REGISTRY,
            mirrors=mirror_settings(mirror),
            from_bundle=from_bundle,
        ),
        Reporter.for_stderr(),
    )
    print(f"{venv}: {result.state}, vllm {result.version} (generation {result.generation.name})")


@command(any_error_exit=ExitCode.USAGE)
def verify(
    lock: Annotated[str, typer.Argument(help="lock path or name in locks/")],
    venv: Annotated[Path, typer.Option(help="environment to check")] = DEFAULT_VENV,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> int:
    """Compare an installed environment with its lock: exit 0 clean, 1 drift, 2 error."""
    from vllm_lock.actions import verify as verify_action

    try:
        report = verify_action.verify(lock, venv)
    except VllmLockError as exc:
        report_error(str(exc))
        return int(ExitCode.USAGE)
    print(report.to_json() if as_json else report.render())
    return int(ExitCode.DIFFERENT) if report.drift else 0


@command()
def rollback(
    venv: Annotated[Path, typer.Option(help="environment link")] = DEFAULT_VENV,
    src: Annotated[Path, typer.Option(help="source link")] = DEFAULT_SRC,
) -> None:
    """Switch --venv/--src back to the generation that was active before the current one."""
    from vllm_lock.actions import install as install_action

    target = install_action.rollback(venv, src, Reporter.for_stderr())
    print(f"{venv}: rolled back to generation {target.name}")


@command("build-check")
def build_check(
    src: Annotated[Path, typer.Argument(help="a vLLM-shaped source tree")],
    python: Annotated[str, typer.Option(help="existing interpreter that already holds torch and setuptools")] = sys.executable,
    arch: Annotated[list[str] | None, typer.Option(help="CUDA arch, repeatable (default 12.0)")] = None,
    target_device: Annotated[str, typer.Option(help="VLLM_TARGET_DEVICE")] = "cuda",
    max_jobs: Annotated[str | None, typer.Option(help="MAX_JOBS (default: from CPUs and memory, or $MAX_JOBS)")] = None,
    out: Annotated[Path, typer.Option(help="where the wheel, the log and the unpacked wheel go")] = Path("build-check"),
) -> None:
    """The install's build step and arch check on an existing environment (no venv, no lock)."""
    from vllm_lock.actions import install as install_action

    wheel, found = install_action.build_check(
        install_action.BuildCheckRequest(
            src=src, python=python, archs=tuple(arch or ("12.0",)), target_device=target_device,
            max_jobs=_jobs_setting(max_jobs, "--max-jobs", "MAX_JOBS"), out=out.resolve(),
        ),
        Reporter.for_stderr(),
    )
    print(f"{wheel}: {', '.join(sorted(found)) or 'no cubins (not a CUDA build)'}")
