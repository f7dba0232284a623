"""Lock -> a PEP 751 pylock document that any standard installer (uv pip sync) accepts. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tomlkit

from vllm_lock import codec
from vllm_lock.model import Lock, Package


def environment_marker(lock: Lock) -> str:
    return (
        f"sys_platform == 'linux' and platform_machine == '{lock.target.machine}' "
        f"and python_version == '{lock.target.python}'"
    )


def to_pylock(lock: Lock, *, local_path: Callable[[Package], str] | None = None) -> str:
    """PEP 751 text. With local_path, wheels point at files (e.g. the content-addressed cache)
    instead of their URLs, so an offline install reads exactly the bytes the lock names."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Exported by vllm-lock from lock {lock.name!r} ({codec.content_hash(lock)})."))
    doc.add("lock-version", "1.0")
    doc.add("environments", [environment_marker(lock)])
    doc.add("requires-python", f"=={lock.target.python}.*")
    doc.add("created-by", "vllm-lock")
    packages = tomlkit.aot()
    for package in lock.packages:
        wheel: dict[str, Any] = {"name": package.filename}
        if local_path is not None:
            wheel["path"] = local_path(package)
        else:
            wheel["url"] = package.url
        wheel["size"] = package.size
        wheel["hashes"] = {"sha256": package.sha256}
        index = lock.torch.index if package.source == "torch" else lock.general_index
        entry = tomlkit.table()
        entry.add("name", package.name)
        entry.add("version", package.version)
        entry.add("index", index)
        wheels = tomlkit.array()
        wheels.append(tomlkit.inline_table())
        wheels[0].update(wheel)
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
