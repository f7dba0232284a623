"""The build machine: facts about it (CPU, memory, disk, glibc, nvcc, Python), the source checkout
of a generation, the staged wheels, and the uv/setuptools/cuobjdump commands, all through proc."""

from __future__ import annotations

import errno
import os
import platform
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from vllm_lock import plan
from vllm_lock.errors import BuildError, InstallError, PreflightError, UnknownRefError
from vllm_lock.model import Lock, Package
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import proc
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store, file_sha256, inside, plain_name

# ---------------------------------------------------------------- machine facts


def glibc() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    if not text.startswith("glibc "):
        return None
    major, minor = text.split()[1].split(".")[:2]
    return int(major), int(minor)


def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * plan.GIB


def free_disk(where: Path) -> int:
    probe = where
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def find_nvcc(env: Mapping[str, str]) -> str | None:
    """$CUDA_HOME/bin/nvcc when CUDA_HOME is set (authoritative, as for torch's cpp_extension),
    else /usr/local/cuda/bin/nvcc, else nvcc on PATH."""
    if env.get("CUDA_HOME"):
        nvcc = Path(env["CUDA_HOME"]) / "bin" / "nvcc"
        return str(nvcc) if nvcc.is_file() and os.access(nvcc, os.X_OK) else None
    for candidate in (Path("/usr/local/cuda/bin/nvcc"),):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("nvcc", path=env.get("PATH"))


def nvcc_version(nvcc: str) -> tuple[int, int] | None:
    result = proc.run([nvcc, "--version"], timeout=60)
    return plan.parse_nvcc_version(result.output) if result.ok else None


def find_python(version: str, cache: Path) -> str | None:
    """An interpreter for `version` that uv accepts (system or uv-managed), without downloading."""
    result = proc.run([uv_shell.uv_bin(), "python", "find", version], env=uv_shell.uv_env(cache), timeout=60)
    return result.output.strip().splitlines()[-1] if result.ok and result.output.strip() else None


def install_python(version: str, cache: Path, log: IO[str], on_line: Callable[[str], None]) -> None:
    env = uv_shell.uv_env(cache, extra={"UV_PYTHON_DOWNLOADS": "automatic"})
    result = proc.run([uv_shell.uv_bin(), "python", "install", version], env=env, timeout=900, log=log, on_line=on_line)
    if not result.ok:
        raise InstallError(f"cannot install Python {version} with uv: {result.tail(1)}")


def machine_facts(lock: Lock, where: Path, cache: Path, env: Mapping[str, str]) -> plan.MachineFacts:
    nvcc = find_nvcc(env) if plan.is_cuda(lock) else None
    return plan.MachineFacts(
        machine=platform.machine(),
        glibc=glibc(),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        mem_available=mem_available(),
        free_disk=free_disk(where),
        python_found=find_python(lock.target.python, cache),
        nvcc=nvcc,
        nvcc_version=nvcc_version(nvcc) if nvcc else None,
    )


# ---------------------------------------------------------------- wheels


def staged_name(package: Package) -> str:
    """The wheel's real filename (resolve may record it URL-quoted: torch-2.10%2Bcu128-...)."""
    return unquote(plain_name(package.filename))


def stage_wheels(
    lock: Lock, store: Store, dest: Path, say: Callable[[str], None]
) -> dict[str, Path]:
    """Every locked wheel in the content-addressed cache (downloaded with its hash checked when
    missing), hard-linked (or copied through a temporary name) under its real filename into
    dest. A file staged earlier is reused only with the lock's size and sha256. Returns name ->
    staged path."""
    dest.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    downloaded = 0
    for package in lock.packages:
        target = inside(dest, staged_name(package))
        source = store.path(package.sha256, package.filename)
        _, _, fetched = store.fetch(
            package.url, package.filename, expected_sha256=package.sha256, expected_size=package.size
        )
        downloaded += fetched
        if not _staged_intact(target, source, package):
            _stage_one(source, target)
        staged[package.name] = target
    say(f"    {len(lock.packages)} wheels staged, {downloaded} downloaded, {len(lock.packages) - downloaded} from the cache")
    return staged


def _staged_intact(target: Path, source: Path, package: Package) -> bool:
    """target holds the locked bytes: the store's own file (a hard link: it was hashed when it
    entered the store and is never written in place), or a copy of the lock's size and hash."""
    try:
        have = target.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not target.is_file() or target.is_symlink() or have.st_size != package.size:
        return False
    mine = source.stat()
    if (have.st_ino, have.st_dev) == (mine.st_ino, mine.st_dev):
        return True
    return file_sha256(target) == package.sha256


def _stage_one(source: Path, target: Path) -> None:
    """source at target: a hard link, or else a copy written under a temporary name, synced
    and renamed, so that target is never a partial file. A full disk names the file."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        try:
            os.link(source, partial)
        except OSError:
            with source.open("rb") as reader, partial.open("wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
                writer.flush()
                os.fsync(writer.fileno())
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise PreflightError(f"no space left on the device while staging {target}") from None
        raise InstallError(f"cannot stage {target}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- uv


def venv_argv(python: str, venv: Path) -> list[str]:
    return [uv_shell.uv_bin(), "venv", "--clear", "--no-config", "--python", python, str(venv)]


def sync_argv(venv: Path, pylock_path: Path) -> list[str]:
    return [
        uv_shell.uv_bin(), "pip", "sync", "--preview-features", "pylock",
        "--python", str(venv / "bin" / "python"), "--offline", "--no-index", str(pylock_path),
    ]


def editable_argv(python: str, src: Path) -> list[str]:
    return [
        uv_shell.uv_bin(), "pip", "install", "-v", "--python", python,
        "--no-build-isolation", "--no-deps", "--offline", "--no-index", "--reinstall-package", "vllm",
        "-e", str(src),
    ]


def wheel_argv(python: str, src: Path, out: Path) -> list[str]:
    return [
        uv_shell.uv_bin(), "build", "-v", "--wheel", "--python", python, "--no-build-isolation",
        "--offline", "--no-index", "--out-dir", str(out), str(src),
    ]


def install_wheel_argv(python: str, wheel: Path) -> list[str]:
    return [
        uv_shell.uv_bin(), "pip", "install", "--python", python, "--no-deps", "--offline",
        "--no-index", "--reinstall-package", "vllm", str(wheel),
    ]


def run_uv(
    argv: list[str], *, env: Mapping[str, str], what: str, log: IO[str], on_line: Callable[[str], None],
    timeout: float = 600,
) -> None:
    result = proc.run(argv, env=env, log=log, on_line=on_line, timeout=timeout)
    if not result.ok:
        detail = _last_error_line(result.output)
        raise InstallError(f"uv failed while {what}: {detail}")


def _last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else "?"


def build_vllm(
    *, python: str, src: Path, env: Mapping[str, str], editable: bool, dist: Path, log: IO[str],
    on_line: Callable[[str], None], log_path: Path, install: bool = True, timeout: float = 6 * 3600,
) -> Path | None:
    """Build vLLM from src with the given environment, no build isolation, nothing from an index.
    Editable: `uv pip install -e`. Otherwise a wheel into dist (`uv build`), then installed
    when `install`. Returns the wheel for non-editable builds. BuildError shows the log's tail."""
    if editable:
        argv = editable_argv(python, src)
    else:
        shutil.rmtree(dist, ignore_errors=True)
        dist.mkdir(parents=True)
        argv = wheel_argv(python, src, dist)
    result = proc.run(argv, env=env, cwd=src, log=log, on_line=on_line, timeout=timeout)
    if not result.ok:
        tail = "\n".join("    " + line for line in result.output.splitlines()[-15:])
        raise BuildError(f"building vLLM failed (exit {result.returncode}); last lines:\n{tail}\n  full log: {log_path}")
    if editable:
        return None
    wheels = sorted(dist.glob("*.whl"))
    if not wheels:
        raise BuildError(f"the build produced no wheel in {dist}; full log: {log_path}")
    if install:
        run_uv(install_wheel_argv(python, wheels[0]), env=env, what="installing the vLLM wheel", log=log, on_line=on_line)
    return wheels[0]


def build_filter(reporter_line: Callable[[str], None]) -> Callable[[str], None]:
    """Live build output without uv's own debug chatter (it stays in the full log)."""

    backend = False

    def show(line: str) -> None:
        nonlocal backend
        if line.startswith("DEBUG "):
            if line.startswith("DEBUG Calling `"):
                backend = True
            elif backend:
                reporter_line(line[len("DEBUG "):])
            return
        backend = False
        reporter_line(line)

    return show


# ---------------------------------------------------------------- source


def checkout(lock: Lock, cache: Path, src: Path, say: Callable[[str], None]) -> None:
    """src at the locked commit: cloned from the cached mirror, or an existing checkout reused
    (fetch, forced switch, clean; ignored build artefacts are kept for incremental rebuilds).
    A checkout that git cannot bring to the commit (missing objects, a clone killed half-way)
    is cloned again. HEAD must equal the locked commit, with the tags vLLM's version needs.
    The mirror's lock is held throughout: no other install fetches into it while we read it."""
    url = git_shell.check_url(lock.vllm.url)
    commit = git_shell.check_commit(lock.vllm.commit)
    with git_shell.mirror_lock(cache, url) as mirror:
        git_shell.update_mirror(cache, url, commit)  # UnknownRefError when the remote lost it
        if (src / ".git").exists():
            try:
                _git(["fetch", "--quiet", "--tags", "--force", "--", str(mirror), "+refs/heads/*:refs/remotes/mirror/*"],
                     src, "updating the checkout")
                _to_commit(src, commit)
                say(f"    reusing the checkout {src}")
                return
            except InstallError as exc:
                say(f"    the checkout {src} is unusable ({exc}); cloning it again")
        partial = src.with_name(f".{src.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        _git(["clone", "--quiet", "--no-checkout", "--", str(mirror), str(partial)], None, "cloning the mirror")
        _git(["remote", "set-url", "--", "origin", url], partial, "naming the origin")
        _to_commit(partial, commit)
        if src.exists() or src.is_symlink():
            shutil.rmtree(src) if src.is_dir() and not src.is_symlink() else src.unlink()
        os.rename(partial, src)
        say(f"    cloned {url} into {src}")


def _git(args: list[str], cwd: Path | None, what: str) -> str:
    try:
        return git_shell.run(args, cwd=cwd, what=what)
    except git_shell.GitError as exc:
        raise InstallError(f"{cwd or 'git'}: {exc}") from None


def _to_commit(src: Path, commit: str) -> None:
    _git(["switch", "--quiet", "--force", "--detach", "--end-of-options", commit],
         src, f"checking out {commit[:9]}")
    _git(["clean", "-ffdq"], src, "cleaning the checkout")
    head = _git(["rev-parse", "--verify", "HEAD"], src, "reading HEAD").strip()
    if head != commit:
        raise InstallError(f"{src}: HEAD is {head}, the lock says {commit}")


def head_commit(src: Path) -> str | None:
    try:
        return git_shell.run(["rev-parse", "--verify", "HEAD"], cwd=src, what="reading HEAD").strip()
    except git_shell.GitError:
        return None


def exact_tag(src: Path) -> str | None:
    try:
        out = git_shell.run(["describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD"], cwd=src,
                            what="describing HEAD")
    except git_shell.GitError:
        return None
    return out.strip() or None


# ---------------------------------------------------------------- checks


def vllm_version(venv_bin: Path) -> tuple[bool, str]:
    result = proc.run([str(venv_bin / "vllm"), "--version"], timeout=300)
    return result.ok, result.output.strip().splitlines()[-1] if result.output.strip() else ""


def find_cuobjdump(env: Mapping[str, str]) -> str | None:
    nvcc = find_nvcc(env)
    if nvcc:
        sibling = Path(nvcc).with_name("cuobjdump")
        if sibling.is_file():
            return str(sibling)
    return shutil.which("cuobjdump", path=env.get("PATH"))


def cubins(libraries: list[Path], env: Mapping[str, str]) -> set[str]:
    """sm_XX names of the cubins in the libraries (cuobjdump --list-elf)."""
    tool = find_cuobjdump(env)
    if tool is None:
        raise InstallError("cuobjdump not found next to nvcc or on PATH: cannot check the compiled archs")
    found: set[str] = set()
    for library in libraries:
        result = proc.run([tool, "--list-elf", str(library)], timeout=300)
        found |= plan.cubin_archs(result.output)
    return found


def compiled_libraries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.so") if "site-packages" not in p.parts or "vllm" in p.parts)


__all__ = ["UnknownRefError"]
