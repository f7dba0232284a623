"""resolve: (vLLM ref, torch nightly date, build deps) -> a hashed lock.

  request.py   what is asked, checked before any I/O
  source.py    the vLLM commit: tree, layout, stripping, declared requirements, external sources, Rust
  torch.py     the torch index's pages, the commit's torch family, the torch build and its members
  packages.py  the package set through `uv pip compile`
  hashes.py    every wheel's URL, size and sha256

The pure rules they apply are in the core: vllm_lock.resolution (the set handed to uv, its
pylock read back) and vllm_lock.uv_errors (uv's failure -> our error)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import vllm_lock
from vllm_lock import clock, torch_family
from vllm_lock.actions.resolve.hashes import hash_packages
from vllm_lock.actions.resolve.request import ResolveRequest, parse_build_env, validate
from vllm_lock.actions.resolve.source import read_source
from vllm_lock.actions.resolve.torch import IndexPages, resolve_packages
from vllm_lock.errors import OutputError
from vllm_lock.model import BuildRecipe, Lock, Provenance, Target
from vllm_lock.progress import Reporter
from vllm_lock.shell import lockfiles, mirroring
from vllm_lock.shell import uv as uv_shell

__all__ = ["ResolveRequest", "parse_build_env", "resolve"]

LOGS_KEPT = 20


def resolve(request: ResolveRequest, reporter: Reporter) -> tuple[Lock, Path, bool]:
    """Resolve and write the lock; returns (lock, path, whether the file changed). Everything it
    says and uv's whole output go to a log file under <cache>/logs (the newest 20 are kept)."""
    target, recipe = validate(request)
    output = request.output_path
    if request.output is None:  # the first resolve in a directory: locks/ is ours to create
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {output.parent}: {exc.strerror or exc}") from None
    lockfiles.check_writable(output)
    logs = request.cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")  # the log's name: the real time, always
    log_path = logs / f"resolve-{request.name}-{stamp}.log"
    with log_path.open("w", encoding="utf-8") as log:
        rep = reporter.with_log(log)
        rep.say(f"full log: {log_path}")
        try:
            with mirroring.using(request.mirrors):
                return _resolve(request, target, recipe, output, rep)
        finally:
            reporter.timings.update(rep.timings)
            for old in sorted(logs.glob("resolve-*.log"), key=lambda p: p.stat().st_mtime)[:-LOGS_KEPT]:
                old.unlink(missing_ok=True)


def _resolve(
    request: ResolveRequest, target: Target, recipe: BuildRecipe, output: Path, reporter: Reporter
) -> tuple[Lock, Path, bool]:
    pages = IndexPages(request.torch_index_url)
    # The torch index pages do not depend on the vLLM source: fetched while git and the
    # stripping script run (a failure there is reported when the pages are used).
    with ThreadPoolExecutor(max_workers=3) as pool:
        pool.submit(pages.prefetch, (torch_family.TORCH,))
        uv_version = pool.submit(uv_shell.uv_version)  # `uv --version`: a process, run beside git
        with reporter.step("vLLM source"):
            compiled_part, rest_of_source = read_source(request, target, reporter)
        # The CMake external sources (git ls-remote) and the Rust frontend (Cargo.lock) do not feed
        # the compile: read while uv runs. Their lines follow the compile's; their errors come first,
        # as when they were read before it.
        aside = io.StringIO()
        pending = pool.submit(rest_of_source, Reporter(quiet=True, log=aside))
        existing = pool.submit(lockfiles.read_existing, output)  # parsed while uv runs, compared after
        try:
            with reporter.step("torch and the package set"):
                torch_input, pylock, family = resolve_packages(request, target, compiled_part, pages, reporter)
        finally:
            externals, rust = pending.result()
            for line in aside.getvalue().splitlines():
                reporter.say(line)
    source = dataclasses.replace(compiled_part, external_sources=externals, rust=rust)
    with reporter.step("hashes"):
        packages = hash_packages(pylock, request, pages, reporter)
    lock = Lock(
        name=request.name,
        phase=request.phase,
        vllm=source.vllm,
        torch=torch_input,
        general_index=request.general_index.rstrip("/"),
        target=target,
        build=recipe,
        layout=dataclasses.replace(source.layout, runtime_set=source.runtime),
        external_sources=source.external_sources,
        rust=source.rust,
        packages=packages,
        provenance=Provenance(
            tool_version=vllm_lock.__version__, uv_version=uv_version.result(), resolved_at=clock.utc_timestamp()
        ),
    )
    old = existing.result()
    changed = lockfiles.write(lock, output, existing=old)
    return lock, output, changed
