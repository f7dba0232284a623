"""The package set resolve hands to uv, and what uv's pylock answer says. Pure.

uv is given one synthetic project: its dependencies are the requirements the commit's build
declares for the target and needs to build, less the torch-family members left out on purpose,
plus the torch family's pins; the torch family (torch, its triton, the commit's members) is
routed to the torch index as an explicit index, so uv takes those only from there and every other
package only from the general index (no dependency confusion)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vllm_lock import torch_family
from vllm_lock.model import Pin

TORCH_INDEX_NAME = "torch-index"
# triton is torch's own dependency on Linux x86_64 only: asked for there, unpinned (torch pins it)
TRITON_MARKER = "platform_system == 'Linux' and platform_machine == 'x86_64'"


def compile_requirements(
    runtime: Iterable[str], build: Iterable[str], torch_pins: Iterable[str], triton: str,
    left_out: Iterable[str] = (),
) -> list[str]:
    """The whole set, in order and without repeats: what the build declares and needs, less the
    members left out on purpose, then the torch family's pins, then triton. Triton is listed
    directly so that the explicit-index source applies to it: nightlies use pytorch-triton,
    releases triton."""
    skipped = set(left_out)
    requirements = [r for r in (*runtime, *build) if canonicalize_name(Requirement(r).name) not in skipped]
    requirements += torch_pins
    requirements.append(f"{triton}; {TRITON_MARKER}")
    return list(dict.fromkeys(requirements))


def routed_names(channel: Literal["nightly", "release"], members: Iterable[str]) -> frozenset[str]:
    """The packages taken from the torch index: torch, the channel's triton and the members."""
    return frozenset({torch_family.TORCH, torch_family.TRITON[channel], *members})


def synthetic_project(requirements: Sequence[str], torch_index: str, routed: Iterable[str]) -> str:
    """The pyproject.toml uv compiles: the whole set as its dependencies, the routed packages
    sourced from the torch index only. Written as text (a resolve that leaves its lock unchanged
    then never imports tomlkit); every key and value is a quoted TOML string."""
    lines = ["[project]", f"name = {_string('vllm-lock-resolution')}", f"version = {_string('0')}", "dependencies = ["]
    lines += [f"    {_string(requirement)}," for requirement in requirements]
    lines += ["]", "", "[[tool.uv.index]]", f"name = {_string(TORCH_INDEX_NAME)}", f"url = {_string(torch_index)}",
              "explicit = true", "", "[tool.uv.sources]"]
    lines += [f"{_string(name)} = {{ index = {_string(TORCH_INDEX_NAME)} }}" for name in sorted(set(routed))]
    return "\n".join(lines) + "\n"


def _string(value: str) -> str:
    """A TOML basic string. JSON's escapes are TOML's; DEL, which JSON leaves raw and TOML
    refuses raw, is escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def pylock_packages(pylock: str) -> list[dict[str, Any]]:
    """The package entries of the pylock uv wrote, as uv wrote them."""
    packages = tomllib.loads(pylock).get("packages", [])
    return packages if isinstance(packages, list) else []


def locked_versions(pylock: str) -> dict[str, str]:
    """Canonical name -> version of every package the pylock locks."""
    return {canonicalize_name(p["name"]): p["version"] for p in pylock_packages(pylock)}


def companion_pins(members: Sequence[str], locked: Mapping[str, str]) -> tuple[Pin, ...]:
    """The torch companions as the lock records them: the members in the family's order, then the
    tritons that are not members, each at its locked version; what was not locked is absent."""
    names = (*members, *sorted(set(torch_family.TRITON.values()) - set(members)))
    return tuple(Pin(name=n, version=locked[n]) for n in names if n in locked)
