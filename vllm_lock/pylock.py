"""Lock -> a PEP 751 pylock document that any standard installer (uv pip sync) accepts. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from vllm_lock import codec
from vllm_lock.model import Lock, Package, Wheel

# Written by hand, not with tomlkit: a flat document of strings, integers, arrays and inline
# tables (install writes one per run, and tomlkit's import and dump cost ~40 ms there).
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _value(key)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _table(header: str, mapping: dict[str, Any]) -> list[str]:
    return ["", header, *(f"{_key(k)} = {_value(v)}" for k, v in mapping.items())]


def environment_marker(lock: Lock) -> str:
    return (
        f"sys_platform == 'linux' and platform_machine == '{lock.target.machine}' "
        f"and python_version == '{lock.target.python}'"
    )


def to_pylock(lock: Lock, *, local_path: Callable[[Package, Wheel], str] | None = None) -> str:
    """PEP 751 text, every locked wheel of every package (the installer picks the best one for
    the machine). With local_path, wheels point at files (e.g. the content-addressed cache)
    instead of their URLs, so an offline install reads exactly the bytes the lock names."""
    content_hash = codec.content_hash(lock)
    lines = [f"# Exported by vllm-lock from lock {lock.name!r} ({content_hash})."]
    head = {"lock-version": "1.0", "environments": [environment_marker(lock)],
            "requires-python": f"=={lock.target.python}.*", "created-by": "vllm-lock"}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in head.items()]
    for package in lock.packages:
        index = lock.torch.index if package.source == "torch" else lock.general_index
        wheels = []
        for locked in package.wheels:
            wheel: dict[str, Any] = {"name": locked.plain_filename}
            if local_path is not None:
                wheel["path"] = local_path(package, locked)
            else:
                wheel["url"] = locked.url
            wheel["size"] = locked.size
            wheel["hashes"] = {"sha256": locked.sha256}
            wheels.append(wheel)
        lines += _table("[[packages]]", {"name": package.name, "version": package.version, "index": index})
        if len(wheels) == 1:
            lines.append(f"wheels = [{_value(wheels[0])}]")
        else:
            lines += ["wheels = [", *(f"    {_value(w)}," for w in wheels), "]"]
    lines += _table("[tool.vllm-lock]", {"lock": lock.name, "content-hash": content_hash,
                                         "vllm-commit": lock.vllm.commit})
    return "\n".join(lines) + "\n"


def pylock_filename(name: str) -> str:
    return f"pylock.{name}.toml"
