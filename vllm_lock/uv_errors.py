"""uv's output when `uv pip compile` fails -> the error resolve reports. Pure.

uv explains a failure in prose (`× No solution found ...`, `cause: Because ...`, `hint: Wheels
are available for ...`); these rules read the parts that decide what the user is told: an index
that did not answer, a package that ships no wheel for the target (named, with what it does ship),
a torch-family member that does not fit the chosen torch (another nightly may fit), or any other
unsolvable set."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from packaging.utils import canonicalize_name

from vllm_lock import torch_family
from vllm_lock.errors import CompanionMismatchError, ResolutionError, UnreachableError, VllmLockError
from vllm_lock.model import Target

_UNREACHABLE = ("failed to fetch", "connection", "dns", "timed out", "certificate")
_NO_WHEEL_PLATFORM = re.compile(
    r"Wheels are available for `(?P<name>[^`]+)` \((?P<version>[^)]*)\) on the following platforms?: (?P<tags>.+)")
_NO_WHEEL_PYTHON = re.compile(
    r"we only found wheels for `(?P<name>[^`]+)` \((?P<version>[^)]*)\) with the following Python "
    r"(?:implementation|ABI) tags?: (?P<tags>.+)")
_NO_WHEEL_CAUSE = re.compile(r"Because (?:only )?(?P<name>[A-Za-z0-9._-]+)[=<>!~ ][^ ]* has no wheels with a matching "
                             r"(?P<what>platform|Python implementation|Python ABI) tag")


def found_no_solution(output: str) -> bool:
    """uv ran and proved the set unsolvable (not: could not fetch, could not build)."""
    return "no solution" in output.lower()


def named_in(output: str, names: Iterable[str]) -> list[str]:
    """The names (canonical, lower case) that uv's output mentions, in the given order."""
    lowered = output.lower()
    return [name for name in names if name in lowered]


def no_wheel_message(output: str, target: Target) -> str | None:
    """When uv found no solution because a package ships no wheel for the target: one line
    naming the package and the platforms (or Python tags) it does ship. None otherwise."""
    flat = " ".join(output.split())
    for pattern, what, wanted in ((_NO_WHEEL_PLATFORM, "platforms", target.platform),
                                  (_NO_WHEEL_PYTHON, "Python tags", f"Python {target.python}")):
        if match := pattern.search(flat):
            tags = ", ".join(re.findall(r"`([^`]+)`", match.group("tags"))) or match.group("tags")
            return (f"{match.group('name')} {match.group('version')} ships no wheel for {wanted}; "
                    f"its wheels are for these {what}: {tags}")
    if match := _NO_WHEEL_CAUSE.search(flat):
        return (f"{match.group('name')} ships no wheel for {target.platform}, Python {target.python} "
                f"(no {match.group('what')} tag matches)")
    return None


def compile_error(output: str, torch_pins: Sequence[str], target: Target, routed: frozenset[str]) -> VllmLockError:
    """The error for a failed compile. `routed` is what came from the torch index: a package of
    it without a fitting wheel, or a member in an unsolvable set, is a CompanionMismatchError
    (resolve's `latest` then tries an older nightly)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    detail = next((line for line in lines if "because" in line or "No solution" in line), lines[-1] if lines else "?")
    for line in lines:
        if line.startswith(("error:", "×")) and "No solution" not in line:
            detail = line
            break
    lowered = output.lower()
    if any(token in lowered for token in _UNREACHABLE):
        return UnreachableError(f"an index was unreachable while resolving: {detail}")
    if (no_wheel := no_wheel_message(output, target)) is not None:
        if canonicalize_name(no_wheel.split()[0]) in routed:  # another nightly may have it
            return CompanionMismatchError(f"torch companions cannot match ({', '.join(torch_pins)}): {no_wheel}")
        return ResolutionError(no_wheel)
    members = routed - {torch_family.TORCH, *torch_family.TRITON.values()}
    if found_no_solution(output) and named_in(output, members):
        return CompanionMismatchError(f"torch companions cannot match ({', '.join(torch_pins)}): {_reason(lines)}")
    return ResolutionError(f"uv could not resolve the package set: {_reason(lines)}")


def _reason(lines: list[str]) -> str:
    body = [line.lstrip("╰─▶ ").strip() for line in lines if not line.startswith("×")]
    return " ".join(body[:2])[:400] if body else "?"
