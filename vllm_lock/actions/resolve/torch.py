"""The torch side of a resolve: the torch index's pages, the commit's torch family for the
target, the torch build (a nightly by date, or a release) with a member build for each, and the
compile that must fit them together."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Literal

from packaging.utils import canonicalize_name
from packaging.version import Version

from vllm_lock import nightly, resolution, torch_family, uv_errors
from vllm_lock.actions.resolve.packages import compile_set, run_compile
from vllm_lock.actions.resolve.request import ResolveRequest
from vllm_lock.actions.resolve.source import SourceFacts
from vllm_lock.errors import (
    CompanionMismatchError,
    NoNightlyError,
    ResolutionError,
    UnknownTorchVersionError,
    UnreachableError,
    UsageError,
    VllmLockError,
)
from vllm_lock.model import Target, TorchInput
from vllm_lock.progress import Reporter
from vllm_lock.shell import http

LATEST_MAX_TRIES = 10
NightlyBuilds = dict[dt.date, nightly.WheelLink]


class IndexPages:
    """PEP 503 pages of one index, each fetched at most once per resolve; `routed` is the set of
    packages this resolve takes from it (torch, its triton and the commit's family)."""

    def __init__(self, index: str) -> None:
        self.index = index
        self._pages: dict[str, tuple[nightly.Link, ...]] = {}
        self.routed: frozenset[str] = frozenset({torch_family.TORCH, *torch_family.TRITON.values()})
        self._projects: frozenset[str] | None = None

    def links(self, project: str) -> tuple[nightly.Link, ...]:
        if project not in self._pages:
            url = f"{self.index}/{project}/"
            try:
                page = http.get_text(url)
            except http.NotFound:
                self._pages[project] = ()
            else:
                self._pages[project] = nightly.parse_simple_page(page, url)
        return self._pages[project]

    def prefetch(self, projects: tuple[str, ...]) -> None:
        """Fetch these pages and the root page now, ignoring failures (links() retries them)."""
        try:
            self.projects()
            for project in projects:
                self.links(project)
        except VllmLockError:
            pass

    def projects(self) -> frozenset[str]:
        """The projects the index's root page lists (one request; none if it has no root page)."""
        if self._projects is None:
            try:
                page = http.get_text(f"{self.index}/")
            except http.NotFound:
                page = ""
            listed = nightly.parse_simple_page(page, self.index)
            self._projects = frozenset(canonicalize_name(link.filename) for link in listed)
        return self._projects

    def link(self, project: str, url: str) -> nightly.Link | None:
        """The link with this URL on the project's page. Outside the torch family only projects
        the index lists are looked at (a torch index mirrors a few general packages)."""
        if project not in self._pages and project not in self.routed and project not in self.projects():
            return None
        return next((link for link in self.links(project) if link.url == url), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class Family:
    """The commit's torch family for this target, less what --without left out."""

    members: tuple[torch_family.Member, ...]
    left_out: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def routed(self, channel: Literal["nightly", "release"]) -> frozenset[str]:
        """What the compile takes from the torch index: torch, the channel's triton, the members."""
        return resolution.routed_names(channel, self.names)


def family_for(request: ResolveRequest, target: Target, source: SourceFacts, pages: IndexPages,
               reporter: Reporter) -> Family:
    reading = torch_family.family_members(source.removed, source.runtime, carried=lambda name: bool(pages.links(name)),
                                          environment=torch_family.target_environment(target))
    members = reading.members
    for line in reading.not_locked:
        reporter.say(f"    {line}: removed by the stripping script, not a torch-index package: not locked "
                     "(the build will not declare it)")
    try:
        kept, left_out = torch_family.leave_out(members, request.without)
    except torch_family.FamilyError as exc:
        raise UsageError(str(exc)) from None
    for member in members:
        how = "left out (--without)" if member.name in left_out else ", ".join(member.lines)
        reporter.say(f"    torch family: {member.name} ({member.origin}: {how})")
    pages.routed = pages.routed | {m.name for m in kept}
    return Family(members=kept, left_out=left_out)


def resolve_packages(
    request: ResolveRequest, target: Target, source: SourceFacts, pages: IndexPages, reporter: Reporter
) -> tuple[TorchInput, str, Family]:
    index = request.torch_index_url
    torch_wheels = pages.links("torch")
    if not torch_wheels:
        raise UnreachableError(f"torch index {index} lists no torch wheels")
    family = family_for(request, target, source, pages, reporter)
    if request.torch_channel == "release":
        return (*_resolve_release(request, target, source, family, pages, torch_wheels, reporter), family)
    builds = nightly.nightly_builds(torch_wheels, cuda=request.cuda, target=target)
    if not builds:
        raise NoNightlyError(
            f"no torch nightly for {request.cuda}, Python {target.python}, {target.platform} on {index}")
    member_builds = {
        m.name: {d: w.version for d, w in nightly.nightly_builds(pages.links(m.name), cuda=request.cuda,
                                                                 target=target).items()}
        for m in family.members
    }
    if request.torch_date == "latest":
        tried = []
        for date in nightly.latest_first(builds)[:LATEST_MAX_TRIES]:
            try:
                return (*_resolve_nightly(request, target, source, family, date, builds, member_builds, reporter),
                        family)
            except CompanionMismatchError as exc:
                reporter.say(f"    {date}: skipped ({exc})")
                tried.append(str(date))
        raise CompanionMismatchError(
            f"no nightly among the newest {len(tried)} ({tried[-1]} .. {tried[0]}) resolves with its companions"
        )
    wanted = nightly.parse_requested_date(request.torch_date)
    if wanted not in builds:
        near = ", ".join(str(d) for d in nightly.nearest_dates(builds, wanted))
        raise NoNightlyError(f"no torch nightly on {wanted} for {request.cuda}/{target.python}; nearest: {near}")
    return (*_resolve_nightly(request, target, source, family, wanted, builds, member_builds, reporter), family)


def _member_error(exc: torch_family.FamilyError, request: ResolveRequest, target: Target) -> ResolutionError:
    """A member the index lacks (no build of it at all): no other date can help."""
    return ResolutionError(f"{exc} ({request.cuda}, Python {target.python}, {target.platform}) on "
                           f"{request.torch_index_url}; `--without {exc.member}` leaves it out on purpose")


def nightly_choices(
    family: Family, date: dt.date, member_builds: dict[str, dict[dt.date, Version]], request: ResolveRequest,
    target: Target,
) -> list[torch_family.MemberChoice]:
    """What uv is asked for each member with the torch of `date`."""
    choices, gaps = [], []
    for member in family.members:
        try:
            choices.append(torch_family.choose_nightly(member, member_builds[member.name], date))
        except torch_family.CompanionGap as exc:
            gaps.append(exc.member)
        except torch_family.FamilyError as exc:
            raise _member_error(exc, request, target) from None
    if gaps:
        raise CompanionMismatchError(f"no {' or '.join(gaps)} nightly built on {date} or the day after")
    return choices


def _resolve_nightly(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    family: Family,
    date: dt.date,
    builds: NightlyBuilds,
    member_builds: dict[str, dict[dt.date, Version]],
    reporter: Reporter,
) -> tuple[TorchInput, str]:
    torch_wheel = builds[date]
    choices = nightly_choices(family, date, member_builds, request, target)
    reporter.say(f"    torch nightly {date}: {torch_wheel.version}")
    pylock = compile_preferring(request, target, source, family, f"torch=={torch_wheel.version}", choices, reporter)
    locked = resolution.locked_versions(pylock)
    version = locked.get("torch")
    if version != str(torch_wheel.version):
        raise ResolutionError(f"uv resolved torch {version}, expected {torch_wheel.version}")
    torch_input = TorchInput(
        channel="nightly",
        requested=request.torch_date,
        cuda=request.cuda,
        index=request.torch_index_url,
        version=version,
        date=date.isoformat(),
        companions=resolution.companion_pins(family.names, locked),
        left_out=family.left_out,
    )
    return torch_input, pylock


def _resolve_release(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    family: Family,
    pages: IndexPages,
    torch_links: tuple[nightly.Link, ...],
    reporter: Reporter,
) -> tuple[TorchInput, str]:
    releases = nightly.release_versions(torch_links, cuda=request.cuda, target=target)
    wanted = (request.torch_version or "").split("+")[0]
    if wanted not in releases:
        known = sorted(releases, key=Version)
        near = ", ".join(known[-5:]) or "none"
        raise UnknownTorchVersionError(
            f"torch {wanted} does not exist for {request.cuda}/{target.python} on {request.torch_index_url}; "
            f"newest available: {near}"
        )
    version = str(releases[wanted].version)
    try:
        choices = [torch_family.choose_release(m, nightly.release_builds(pages.links(m.name), cuda=request.cuda,
                                                                         target=target))
                   for m in family.members]
    except torch_family.FamilyError as exc:
        raise _member_error(exc, request, target) from None
    pylock = compile_preferring(request, target, source, family, f"torch=={version}", choices, reporter)
    locked = resolution.locked_versions(pylock)
    return (
        TorchInput(
            channel="release",
            requested=wanted,
            cuda=request.cuda,
            index=request.torch_index_url,
            version=version,
            date=None,
            companions=resolution.companion_pins(family.names, locked),
            left_out=family.left_out,
        ),
        pylock,
    )


def compile_preferring(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    family: Family,
    torch_pin: str,
    choices: list[torch_family.MemberChoice],
    reporter: Reporter,
) -> str:
    """Compile with each member at the commit's own pin where one was chosen; when uv finds no
    solution and names such a member, that pin does not fit this torch (its metadata says
    otherwise): compile once more with what fits instead."""
    for choice in choices:
        reporter.say(f"    asking for {choice.requirement}" + (" (the commit's pin)" if choice.preferred else ""))
    routed = family.routed(request.torch_channel)
    pins = [torch_pin, *(c.requirement for c in choices)]
    ok, output = run_compile(request, target, source, torch_pins=pins, routed=routed, left_out=family.left_out,
                             reporter=reporter)
    if ok:
        return output
    preferred = [c for c in choices if c.fallback]
    if not preferred or not uv_errors.found_no_solution(output):
        raise uv_errors.compile_error(output, pins, target, routed)
    named = set(uv_errors.named_in(output, (c.member.name for c in preferred)))
    unfit = [c for c in preferred if c.member.name in named] or preferred
    for choice in unfit:
        reporter.say(f"    {choice.requirement} (the commit's pin) does not fit {torch_pin}: "
                     f"asking for {choice.fallback}")
    retry = [dataclasses.replace(c, requirement=c.fallback, preferred=False, fallback=None) if c in unfit and c.fallback
             else c for c in choices]
    return compile_set(request, target, source, torch_pins=[torch_pin, *(c.requirement for c in retry)],
                       routed=routed, left_out=family.left_out, reporter=reporter)
