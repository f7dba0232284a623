"""Generations like a Nix profile (the paths are generation.py's): `--venv` and `--src` symlinks
switched together into one generation (rename of temporary symlinks), and a profile.json history
that rollback walks back. One install or rollback at a time holds the container's install lock;
whatever decides what to do is read while holding it."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vllm_lock import generation as generation_paths
from vllm_lock import receipt as receipts
from vllm_lock.errors import InstallError, OutputError, PreflightError, UsageError
from vllm_lock.generation import Generation, GenerationContainer
from vllm_lock.shell import files


def _real(path: Path) -> Path:
    """path with its directory resolved (the path itself may be one of our symlinks)."""
    return Path(os.path.realpath(path.parent)) / path.name


def container_for(venv: Path, src: Path) -> GenerationContainer:
    """The generations of --venv, the links made absolute (against the working directory)."""
    return GenerationContainer(venv_link=Path(os.path.abspath(venv)), src_link=Path(os.path.abspath(src)))


def check_container(container: GenerationContainer) -> None:
    """Everything about --venv and --src that would fail the switch at the end, checked before
    anything is written: the two can coexist, no real directory is in the way, and the link
    directories and the generations directory can be written."""
    for flag, link in (("--venv", container.venv_link), ("--src", container.src_link)):
        named = generation_paths.link_path_problem(flag, link)
        if named:
            raise UsageError(named)
    problem = generation_paths.links_problem(
        venv_link=_real(container.venv_link), src_link=_real(container.src_link), generations=_real(container.root)
    )
    if problem:
        raise UsageError(problem)
    check_links(container)
    check_writable_dir(container.venv_link.parent, "--venv's directory")
    check_writable_dir(container.src_link.parent, "--src's directory")
    check_writable_dir(container.root, "the generations directory")


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


def check_links(container: GenerationContainer) -> None:
    """An old Phoenix install (a real directory at --venv or --src) is never destroyed silently."""
    for link, flag in ((container.venv_link, "--venv"), (container.src_link, "--src")):
        if link.exists() and not link.is_symlink():
            raise PreflightError(
                f"{link} ({flag}) is a real directory, not a vllm-lock generation link: move it aside "
                f"(e.g. `mv {link} {link}.phoenix-old`) or pass another {flag}; nothing was changed"
            )


@contextmanager
def exclusive(container: GenerationContainer) -> Iterator[None]:
    """One install or rollback at a time per generations directory (released by the kernel on
    SIGKILL). The holder's pid is written into the lock file for the message of the next one."""
    directory = container.root
    # "a+": opening must not truncate the holder's pid before we know we hold the lock
    with open(container.install_lock, "a+", encoding="utf-8") as handle:
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


def active(container: GenerationContainer) -> Generation | None:
    """The generation --venv points into, or None."""
    return _active(container.venv_link, container.root)


def _active(venv_link: Path, root: Path) -> Generation | None:
    if not venv_link.is_symlink():
        return None
    target = Path(os.readlink(venv_link))
    if not target.is_absolute():
        target = venv_link.parent / target
    generation = Generation.of_venv(target)
    if generation.root.parent.resolve() != root.resolve():
        return None
    return generation


def _temp_link(link: Path, target: Path) -> Path:
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    return tmp


def _readlink(link: Path) -> str | None:
    return os.readlink(link) if link.is_symlink() else None


def links_point_at(container: GenerationContainer, generation: Generation) -> bool:
    """--src links to the generation's src, and --venv holds a python and a vllm (a damaged
    generation is rebuilt, not skipped)."""
    return (
        container.src_link.is_symlink()
        and Path(os.readlink(container.src_link)) == generation.src
        and (container.venv_link / "bin" / "python").exists()
        and (container.venv_link / "bin" / "vllm").exists()
    )


def switch(container: GenerationContainer, generation: Generation) -> None:
    """Point --venv and --src at generation, both or neither. Both temporary links are made
    first (what fails on a read-only or full directory), then renamed, venv first (it is what
    running services use); should the second rename fail, the first is put back. A crash
    between the two renames leaves --src behind: `verify` reports it (profile.json names the
    --src link) and a rerun of install, finding its generation complete, switches again."""
    venv_target, src_target = generation.venv, generation.src
    container.venv_link.parent.mkdir(parents=True, exist_ok=True)
    container.src_link.parent.mkdir(parents=True, exist_ok=True)
    history = read_profile(container)
    _write_profile(container, history)  # records the --src link before either rename
    venv_tmp = _temp_link(container.venv_link, venv_target)
    try:
        src_tmp = _temp_link(container.src_link, src_target)
    except OSError as exc:
        venv_tmp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot switch {container.src_link} (--src): {exc.strerror or exc}; nothing was switched"
        ) from None
    previous_venv = _readlink(container.venv_link)
    os.replace(venv_tmp, container.venv_link)
    try:
        os.replace(src_tmp, container.src_link)
    except OSError as exc:
        src_tmp.unlink(missing_ok=True)
        _put_back(container.venv_link, previous_venv)
        raise OutputError(
            f"cannot switch {container.src_link} (--src): {exc.strerror or exc}; "
            f"{container.venv_link} was switched back, nothing changed"
        ) from None
    history.append(generation.id)
    _write_profile(container, history)


def _put_back(link: Path, previous: str | None) -> None:
    if previous is None:
        link.unlink(missing_ok=True)
    else:
        os.replace(_temp_link(link, Path(previous)), link)


def _write_profile(container: GenerationContainer, history: list[str]) -> None:
    data = {"history": history[-50:], "src_link": str(container.src_link)}
    files.write_atomically(container.profile, json.dumps(data, indent=2) + "\n")


def _profile_data(profile: Path) -> dict[str, object]:
    try:
        data = json.loads(profile.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_profile(container: GenerationContainer) -> list[str]:
    history = _profile_data(container.profile).get("history", [])
    return [str(x) for x in history] if isinstance(history, list) else []


def half_switch_problem(venv_link: Path) -> str | None:
    """When the --src link recorded for --venv's generations does not point into the generation
    --venv points into (a switch interrupted between its two renames): what is wrong."""
    root = generation_paths.generations_root(venv_link)
    generation = _active(venv_link, root)
    src_link = _profile_data(root / generation_paths.PROFILE_NAME).get("src_link")
    if generation is None or not isinstance(src_link, str):
        return None
    src = Path(src_link)
    target = _readlink(src)
    if target is not None and Path(os.path.normpath(src.parent / target)) == generation.src:
        return None
    return (
        f"{src} (--src) points to {target or 'nothing'}, not to {generation.src}: a switch did not finish "
        f"(rerun install, or rollback)"
    )


def complete(container: GenerationContainer, generation_id: str) -> bool:
    return receipts.read(container.generation(generation_id)) is not None


def rollback_target(container: GenerationContainer) -> Generation:
    """The most recent complete generation before the active one in the history."""
    current = active(container)
    if current is None:
        raise UsageError(f"{container.venv_link} is not a vllm-lock generation link: nothing to roll back")
    for generation_id in reversed(read_profile(container)):
        if generation_id != current.id and complete(container, generation_id):
            return container.generation(generation_id)
    raise UsageError(f"no earlier complete generation in {container.root} to roll back to")
