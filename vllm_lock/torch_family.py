"""The torch family a vLLM commit asks for, taken from the commit itself, and what uv is asked
for each member. Pure.

Members: the requirement lines the commit's stripping script removes from the files the target
reads (torch itself is the chosen torch, not a member), with their markers evaluated for the
target, that name one of PyTorch's projects (torch* or carried by the torch index); plus any such
project the declared requirements still name with "torch" in its name (the stripping script's own
test), e.g. `torchcodec >= 0.14`, which `--prefix` keeps. A line the default mode removes only
because its comment or name mentions torch (`open-clip-torch`, `xformers ... # Requires PyTorch`)
is not a member unless the torch index carries the package."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from vllm_lock.model import Target

TORCH = "torch"
# torch's own dependency on Linux x86_64: routed to the torch index with torch, never a member.
TRITON = {"nightly": "pytorch-triton", "release": "triton"}


class FamilyError(ValueError):
    """A member cannot be locked (the message names it)."""

    def __init__(self, message: str, *, member: str = "") -> None:
        super().__init__(message)
        self.member = member


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    name: str  # canonical
    lines: tuple[str, ...]  # the commit's requirement lines for it that apply to the target
    origin: Literal["stripped", "declared"]

    @property
    def specifier(self) -> SpecifierSet:
        """The commit's own pin (the lines' specifiers together); empty when unpinned."""
        combined = SpecifierSet()
        for line in self.lines:
            combined &= Requirement(line).specifier
        return combined


def target_environment(target: Target) -> dict[str, str]:
    """PEP 508 marker values of the target interpreter (CPython on Linux)."""
    return {
        "python_version": target.python,
        "python_full_version": f"{target.python}.0",
        "platform_machine": target.machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def removed_lines(before: str, after: str) -> tuple[str, ...]:
    """The lines of `before` that the stripping script deleted (it deletes whole lines)."""
    left = Counter(after.splitlines())
    removed = []
    for line in before.splitlines():
        if left[line] > 0:
            left[line] -= 1
        else:
            removed.append(line)
    return tuple(removed)


def removed_requirements(lines: Iterable[str]) -> tuple[str, ...]:
    """Requirement strings among removed lines (comments, blank lines and options skipped)."""
    found = []
    for raw in lines:
        line = raw.partition(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            found.append(str(Requirement(line)))
        except InvalidRequirement:
            continue  # e.g. a pyproject line `"torch == 2.14.0",`: torch, the chosen one
    return tuple(dict.fromkeys(found))


def _applies(requirement: Requirement, environment: Mapping[str, str]) -> bool:
    marker: Marker | None = requirement.marker
    return marker is None or marker.evaluate(dict(environment))


@dataclass(frozen=True, kw_only=True, slots=True)
class FamilyReading:
    members: tuple[Member, ...]
    # removed lines of packages that are not torch's (the script removed them because their text
    # mentions torch): the build will not declare them, so they are not locked
    not_locked: tuple[str, ...]


def is_torch_package(name: str, carried: Callable[[str], bool]) -> bool:
    """PyTorch's own projects: torch's domain libraries (torchvision, torchaudio, torchcodec, ...)
    or whatever else the torch index carries."""
    return name.startswith(TORCH) or carried(name)


def family_members(
    removed: Iterable[str],
    declared: Iterable[str],
    *,
    carried: Callable[[str], bool],
    environment: Mapping[str, str],
) -> FamilyReading:
    """The commit's torch family for the target, sorted by name (see the module docstring).
    `carried(name)`: whether the torch index has a page for that project."""
    lines: dict[str, list[str]] = {}
    origin: dict[str, Literal["stripped", "declared"]] = {}
    not_locked: list[str] = []
    for text in removed:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == TORCH or not _applies(requirement, environment):
            continue
        if not is_torch_package(name, carried):
            not_locked.append(text)
            continue
        lines.setdefault(name, []).append(text)
        origin[name] = "stripped"
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if (name == TORCH or name in origin or TORCH not in name or not _applies(requirement, environment)
                or not is_torch_package(name, carried)):
            continue
        lines.setdefault(name, []).append(text)
        origin.setdefault(name, "declared")
    members = tuple(Member(name=n, lines=tuple(lines[n]), origin=origin[n]) for n in sorted(lines))
    return FamilyReading(members=members, not_locked=tuple(not_locked))


def leave_out(members: tuple[Member, ...], without: Iterable[str]) -> tuple[tuple[Member, ...], tuple[str, ...]]:
    """Members minus those named by --without; FamilyError for a name that is not a member."""
    names = {canonicalize_name(n) for n in without}
    known = {m.name for m in members}
    for name in sorted(names):
        if name == TORCH:
            raise FamilyError("--without torch: torch is what the lock is built around")
        if name not in known:
            raise FamilyError(f"--without {name}: not a torch-family member of this commit for this target "
                              f"(members: {', '.join(sorted(known)) or 'none'})")
    return tuple(m for m in members if m.name not in names), tuple(sorted(names))


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberChoice:
    """What uv is asked for one member, and the commit's pin it fell back from, if any."""

    member: Member
    requirement: str  # e.g. "torchaudio==2.11.0" or "torchvision>=0.25.0.dev20261112,<=0.25.0.dev20261113"
    preferred: bool  # the requirement is the commit's own pin
    fallback: str | None  # the requirement to use if the commit's pin does not fit the torch


def choose_nightly(member: Member, available: Mapping[dt.date, Version], torch_date: dt.date,
                   *, days_after: int = 1) -> MemberChoice:
    """A nightly member: the builds of the torch's date or the day after (the one whose metadata
    pins this torch is uv's to find), narrowed to the commit's own pin when some of them fit it.
    FamilyError when the index has no build of it at all (a member the index lacks); a
    CompanionGap when it has none near this date (another date may do)."""
    if not available:
        raise FamilyError(f"the torch index has no {member.name} for this CUDA variant and target", member=member.name)
    window = [available[d] for d in (torch_date + dt.timedelta(days=n) for n in range(days_after + 1))
              if d in available]
    spec = member.specifier
    pinned = [v for v in window if spec.contains(v, prereleases=True)]
    if not window:
        everywhere = [v for v in available.values() if spec.contains(v, prereleases=True)]
        if len(spec) and everywhere:  # a member that stopped following torch's nightlies
            return MemberChoice(member=member, requirement=f"{member.name}{spec}", preferred=True, fallback=None)
        raise CompanionGap(f"no {member.name} nightly built on {torch_date} or the day after", member=member.name)
    ranged = f"{member.name}>={min(window).public},<={max(window).public}"
    if len(spec) and pinned and len(pinned) < len(window):
        narrowed = f"{member.name}>={min(pinned).public},<={max(pinned).public}"
        return MemberChoice(member=member, requirement=narrowed, preferred=True, fallback=ranged)
    return MemberChoice(member=member, requirement=ranged, preferred=False, fallback=None)


def choose_release(member: Member, available: Iterable[Version]) -> MemberChoice:
    """A release member: the commit's own pin when the index has a version that satisfies it
    (uv then checks it fits the torch; `fallback` is what to ask if not), else any version
    the index has (uv takes the newest whose metadata fits the torch)."""
    versions = list(available)
    if not versions:
        raise FamilyError(f"the torch index has no {member.name} for this CUDA variant and target", member=member.name)
    spec = member.specifier
    if len(spec) and any(spec.contains(v, prereleases=True) for v in versions):
        return MemberChoice(member=member, requirement=f"{member.name}{spec}", preferred=True, fallback=member.name)
    return MemberChoice(member=member, requirement=member.name, preferred=False, fallback=None)


class CompanionGap(FamilyError):
    """No build of a member near the torch's date: another nightly may have one."""
