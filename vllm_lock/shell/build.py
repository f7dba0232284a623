"""The build: the locked Python (uv), the source checkout of a generation, the staged wheels, and
the uv/setuptools/cuobjdump commands, all through proc. The machine's own facts: machine.py."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from vllm_lock import plan
from vllm_lock.errors import BuildError, InstallError, OutputError, PreflightError, UnknownRefError
from vllm_lock.model import Lock, Wheel
from vllm_lock.shell import proc
from vllm_lock.shell import uv as uv_shell

# callers that predate machine.py use build_shell.*
from vllm_lock.shell.machine import find_nvcc as find_nvcc
from vllm_lock.shell.machine import glibc as glibc
from vllm_lock.shell.machine import mem_available as mem_available
from vllm_lock.shell.machine import nvcc_version as nvcc_version
from vllm_lock.shell.store import Store, file_sha256, inside, plain_name

# ---------------------------------------------------------------- Python (uv)

def find_python(version: str, cache: Path) -> str | None:
    """An interpreter for `version` that uv accepts (system or uv-managed), without downloading;
    None when uv finds none. A `pythonX.Y` on PATH is one `uv venv --python X.Y` finds too, and
    looking costs nothing; only without it is uv asked (~130 ms: its own start-up and discovery).
    Any other failure of uv (it cannot create its cache, say) is reported as itself, not as a
    missing Python."""
    if on_path := shutil.which(f"python{version}"):
        return on_path
    result = proc.run([uv_shell.uv_bin(), "python", "find", version], env=uv_shell.uv_env(cache), timeout=60)
    if result.ok and result.output.strip():
        return result.output.strip().splitlines()[-1]
    if result.ok or "no interpreter found" in result.output.lower():
        return None
    raise PreflightError(f"`uv python find {version}` failed: {_uv_error(result.output)}")


def _uv_error(output: str) -> str:
    """uv's error and its causes on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), 0)
    return "; ".join(line.removeprefix("error:").strip() for line in lines[start:]) or "?"


def install_python(version: str, cache: Path, log: IO[str], on_line: Callable[[str], None]) -> None:
    env = uv_shell.uv_env(cache, extra={"UV_PYTHON_DOWNLOADS": "automatic"})
    result = proc.run([uv_shell.uv_bin(), "python", "install", version], env=env, timeout=900, log=log, on_line=on_line)
    if not result.ok:
        raise InstallError(f"cannot install Python {version} with uv: {result.tail(1)}")


# ---------------------------------------------------------------- wheels


def staged_name(wheel: Wheel) -> str:
    """The wheel's real filename (resolve may record it URL-quoted: torch-2.10%2Bcu128-...)."""
    return plain_name(wheel.plain_filename)


def stage_wheels(
    lock: Lock, store: Store, dest: Path, say: Callable[[str], None]
) -> dict[tuple[str, str], Path]:
    """Every locked wheel (all those of a package that fit the target: the installer picks one)
    in the content-addressed cache (downloaded with its hash checked when missing), present under
    its real filename in dest. Returns (sha256, filename) -> the file the installer is to read.

    Where the store's file has the real filename the installer reads the store's file itself: one
    path on every install, whose inode is never touched. dest holds a symbolic link to it (on the
    same filesystem: a hard link would change the inode's ctime, and uv, which keys its unpacked
    wheels by path and ctime, would unpack every wheel again on every install) or a copy (on
    another). A URL-quoted store name is not a wheel filename an installer can read: that wheel is
    hard-linked or copied into dest and read there. A copy or link is made through a temporary
    name; one staged earlier is reused only with the lock's size and sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    staged: dict[tuple[str, str], Path] = {}
    downloaded = total = 0
    for package in lock.packages:
        for wheel in package.wheels:
            name = staged_name(wheel)  # a plain file name: no directory part
            source = store.path(wheel.sha256, wheel.filename)
            plain = source.name == name
            # dest / name is inside dest; inside() would resolve our own link to the store and refuse it
            target = dest / name if plain else inside(dest, name)
            _, _, fetched = store.fetch(wheel.url, wheel.filename, expected_sha256=wheel.sha256,
                                        expected_size=wheel.size)
            downloaded += fetched
            total += 1
            if plain and source.stat().st_dev == dest.stat().st_dev:
                if not (target.is_symlink() and os.readlink(target) == str(source)):
                    _link_one(source, target)
            elif not _staged_intact(target, source, wheel):
                _stage_one(source, target)
            staged[wheel.sha256, wheel.filename] = source if plain else target
    say(f"    {total} wheels staged, {downloaded} downloaded, {total - downloaded} from the cache")
    return staged


def _staged_intact(target: Path, source: Path, package: Wheel) -> bool:
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


def _link_one(source: Path, target: Path) -> None:
    """target, a symbolic link to source (never followed: a rename replaces the link itself)."""
    _publish(target, lambda partial: os.symlink(source, partial))


def _stage_one(source: Path, target: Path) -> None:
    """source at target: a hard link, or else a synced copy."""
    _publish(target, lambda partial: _link_or_copy(source, partial))


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        with source.open("rb") as reader, dest.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())


def _publish(target: Path, make: Callable[[Path], None]) -> None:
    """target made under a temporary name and renamed over whatever was there, so that it is
    never a partial file; a full disk names the file."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        make(partial)
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
        detail = _uv_error(result.output)
        if any(f"(os error {code})" in result.output for code in _CANNOT_WRITE):
            raise OutputError(f"uv could not write while {what}: {detail}")
        raise InstallError(f"uv failed while {what}: {detail}")


# uv reports an OS error as "(os error N)": these mean a full or read-only disk, not a bad lock
_CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


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
    from vllm_lock.shell import git as git_shell  # gitpython costs ~0.1 s to import; a no-op install needs none

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


def tracked_files(src: Path) -> list[str]:
    """The paths git tracks at the checkout's HEAD (what resolve listed at the commit)."""
    out = _git(["ls-tree", "-r", "-z", "--name-only", "HEAD"], src, "listing the checkout's files")
    return [name for name in out.split("\0") if name]


def _git(args: list[str], cwd: Path | None, what: str) -> str:
    from vllm_lock.shell import git as git_shell

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
    from vllm_lock.shell import git as git_shell

    try:
        return git_shell.run(["rev-parse", "--verify", "HEAD"], cwd=src, what="reading HEAD").strip()
    except git_shell.GitError:
        return None


def exact_tag(src: Path) -> str | None:
    from vllm_lock.shell import git as git_shell

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


# `import vllm`, then the installed distribution's version: what `vllm --version` prints, for a
# build (target `empty`) whose CLI cannot start ("Failed to infer device type").
_IMPORT_VERSION = "import importlib.metadata, vllm; print(importlib.metadata.version('vllm'))"


def imported_vllm_version(python: Path) -> tuple[bool, str]:
    """(ok, version) from `import vllm` and importlib.metadata in the environment's Python;
    (False, the error's last line) when the import fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = proc.run([str(python), "-c", _IMPORT_VERSION], env=env, cwd=python.parent, timeout=300)
    lines = result.output.strip().splitlines()
    return result.ok, lines[-1] if lines else ""


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
