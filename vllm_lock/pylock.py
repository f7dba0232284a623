"""Lock -> a PEP 751 pylock document that any standard installer (uv pip sync) accepts. Pure."""

from __future__ import annotations

from collections.abc import Callable

import tomlkit

from vllm_lock import codec
from vllm_lock.model import Lock, Package, Wheel


def environment_marker(lock: Lock) -> str:
    return (
        f"sys_platform == 'linux' and platform_machine == '{lock.target.machine}' "
        f"and python_version == '{lock.target.python}'"
    )


def to_pylock(lock: Lock, *, local_path: Callable[[Package, Wheel], str] | None = None) -> str:
    """PEP 751 text, every locked wheel of every package (the installer picks the best one for
    the machine). With local_path, wheels point at files (e.g. the content-addressed cache)
    instead of their URLs, so an offline install reads exactly the bytes the lock names."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Exported by vllm-lock from lock {lock.name!r} ({codec.content_hash(lock)})."))
    doc.add("lock-version", "1.0")
    doc.add("environments", [environment_marker(lock)])
    doc.add("requires-python", f"=={lock.target.python}.*")
    doc.add("created-by", "vllm-lock")
    packages = tomlkit.aot()
    for package in lock.packages:
        index = lock.torch.index if package.source == "torch" else lock.general_index
        entry = tomlkit.table()
        entry.add("name", package.name)
        entry.add("version", package.version)
        entry.add("index", index)
        wheels = tomlkit.array()
        for locked in package.wheels:
            wheel = tomlkit.inline_table()
            wheel["name"] = locked.plain_filename
            if local_path is not None:
                wheel["path"] = local_path(package, locked)
            else:
                wheel["url"] = locked.url
            wheel["size"] = locked.size
            wheel["hashes"] = {"sha256": locked.sha256}
            wheels.append(wheel)
        if len(wheels) > 1:
            wheels.multiline(True)
        entry.add("wheels", wheels)
        packages.append(entry)
    doc.add("packages", packages)
    tool = tomlkit.table()
    tool.add(
        "vllm-lock",
        {"lock": lock.name, "content-hash": codec.content_hash(lock), "vllm-commit": lock.vllm.commit},
    )
    doc.add("tool", tool)
    return tomlkit.dumps(doc)


def pylock_filename(name: str) -> str:
    return f"pylock.{name}.toml"
