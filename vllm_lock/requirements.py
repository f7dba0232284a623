"""The runtime requirements a vLLM commit's build declares (its wheel's Requires-Dist), per target
device and CUDA major, read from that commit's own setup.py. Pure: functions take file readers.

vLLM's setup.py (get_requirements) picks one file under requirements/ by VLLM_TARGET_DEVICE and,
for CUDA, rewrites each line by the torch's CUDA major (`if "X" in req and cuda_major == "12":
req = req.replace(...)` / `continue`). Those rewrites differ between releases, so they are read
from the commit's setup.py with `ast` into data (LineRule), never assumed from one release."""

from __future__ import annotations

import ast
import itertools
import posixpath
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from vllm_lock import pysource
from vllm_lock.source_layout import LayoutError

SETUP_PY = "setup.py"
REQUIREMENTS_DIR = "requirements"
# setup.py's device predicates -> VLLM_TARGET_DEVICE ("empty" is _no_device()).
DEVICE_PREDICATES = {
    "_no_device": "empty",
    "_is_cuda": "cuda",
    "_is_hip": "rocm",
    "_is_tpu": "tpu",
    "_is_cpu": "cpu",
    "_is_xpu": "xpu",
    "_is_neuron": "neuron",
    "_is_hpu": "hpu",
}
# A tree whose setup.py has no get_requirements (e.g. the test world): one file per device.
DEFAULT_FILES = {device: "common.txt" if device == "empty" else f"{device}.txt"
                 for device in DEVICE_PREDICATES.values()}


@dataclass(frozen=True, kw_only=True, slots=True)
class LineRule:
    """One rewrite setup.py applies to every CUDA requirement line that contains a substring:
    drop the line (replace is None) or replace text in it, maybe only for one CUDA major."""

    contains: tuple[str, ...]  # the line is selected when any of these occurs in it
    cuda_major: tuple[Literal["==", "!="], str] | None = None
    replace: tuple[str, str] | None = None
    line: int = 0  # in setup.py, for messages

    def applies(self, text: str, cuda_major: int) -> bool:
        if not any(needle in text for needle in self.contains):
            return False
        if self.cuda_major is None:
            return True
        op, major = self.cuda_major
        return (str(cuda_major) == major) == (op == "==")


@dataclass(frozen=True, kw_only=True, slots=True)
class RequirementRules:
    """setup.py's get_requirements as data: the file per device and the CUDA line rules."""

    files: tuple[tuple[str, str], ...]  # (device, file under requirements/)
    cuda_rules: tuple[LineRule, ...]
    from_setup_py: bool  # False: setup.py has no get_requirements, DEFAULT_FILES apply
    # (device, line, statement): a branch changes its set in a way this tool does not model;
    # an error only when that device is locked
    unmodelled: tuple[tuple[str, int, str], ...] = ()

    def file_for(self, device: str) -> str:
        for known, name in self.files:
            if known == device:
                return name
        raise LayoutError(f"{SETUP_PY}: no runtime requirements for target device {device!r} "
                          f"(known: {', '.join(d for d, _ in self.files)})")


DEFAULT_RULES = RequirementRules(files=tuple(sorted(DEFAULT_FILES.items())), cuda_rules=(), from_setup_py=False)


def read_rules(setup_py: str | None) -> RequirementRules:
    """The requirement rules of a commit's setup.py (DEFAULT_RULES when it has no
    get_requirements). LayoutError naming setup.py and the line for a branch or rule it cannot
    read: a rule silently skipped would lock a set the build does not declare."""
    if setup_py is None:
        return DEFAULT_RULES
    try:
        module = pysource.parse(setup_py, SETUP_PY)
    except pysource.PythonSourceError as exc:
        raise LayoutError(str(exc)) from None
    function = next((node for node in module.body
                     if isinstance(node, ast.FunctionDef) and node.name == "get_requirements"), None)
    if function is None:
        return DEFAULT_RULES
    chain = next((node for node in function.body if isinstance(node, ast.If) and _predicate(node.test)), None)
    if chain is None:
        raise LayoutError(f"{SETUP_PY}:{function.lineno}: get_requirements has no `if _no_device(): ...` chain")
    files: list[tuple[str, str]] = []
    rules: tuple[LineRule, ...] = ()
    unmodelled: list[tuple[str, int, str]] = []
    branch: ast.If | None = chain
    while branch is not None:
        device = _predicate(branch.test)
        if device is None:
            raise LayoutError(f"{SETUP_PY}:{branch.lineno}: get_requirements branch on "
                              f"{ast.unparse(branch.test)} is not a device this tool knows")
        name, branch_rules, unread = _read_branch(branch.body, device)
        files.append((device, name))
        if unread is not None:
            unmodelled.append((device, unread.lineno, ast.unparse(unread)))
        if device == "cuda":
            rules = branch_rules
        orelse = branch.orelse
        branch = orelse[0] if len(orelse) == 1 and isinstance(orelse[0], ast.If) else None
    return RequirementRules(files=tuple(files), cuda_rules=rules, from_setup_py=True, unmodelled=tuple(unmodelled))


def _predicate(test: ast.expr) -> str | None:
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and not test.args:
        return DEVICE_PREDICATES.get(test.func.id)
    return None


def _read_branch(body: list[ast.stmt], device: str) -> tuple[str, tuple[LineRule, ...], ast.stmt | None]:
    """The file a branch reads, the rules of its `for req in requirements` loop, and the first
    statement that changes the set in a way this tool does not model."""
    name: str | None = None
    rules: tuple[LineRule, ...] = ()
    unread: ast.stmt | None = None
    for statement in body:
        if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call)
                and isinstance(statement.value.func, ast.Name) and statement.value.func.id == "_read_requirements"
                and statement.value.args and isinstance(statement.value.args[0], ast.Constant)
                and isinstance(statement.value.args[0].value, str)):
            name = statement.value.args[0].value
        elif isinstance(statement, ast.For):
            rules = _read_loop(statement)
        elif isinstance(statement, ast.Assign | ast.If) and not _changes_requirements(statement):
            continue  # cuda_major, cuda_minor = ...; modified_requirements = []; develop-mode checks
        elif unread is None:
            unread = statement
    if name is None:
        line = body[0].lineno if body else 0
        raise LayoutError(f"{SETUP_PY}:{line}: the {device} branch of get_requirements reads no requirements file")
    return name, rules, unread


def _changes_requirements(statement: ast.stmt) -> bool:
    """Whether a statement assigns `requirements` from something other than the rewritten list."""
    for node in ast.walk(statement):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "requirements" for t in targets):
                value = node.value
                if not (isinstance(value, ast.Name) and value.id == "modified_requirements"):
                    return True
    return False


def _read_loop(loop: ast.For) -> tuple[LineRule, ...]:
    rules: list[LineRule] = []
    for statement in loop.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            continue  # modified_requirements.append(req)
        if not isinstance(statement, ast.If) or statement.orelse:
            raise LayoutError(f"{SETUP_PY}:{statement.lineno}: a requirement rule this tool cannot read: "
                              f"{ast.unparse(statement)[:80]}")
        contains, major = _rule_test(statement.test, statement.lineno)
        rules.append(LineRule(contains=contains, cuda_major=major, replace=_rule_action(statement),
                              line=statement.lineno))
    return tuple(rules)


def _rule_test(test: ast.expr, line: int) -> tuple[tuple[str, ...], tuple[Literal["==", "!="], str] | None]:
    parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    contains: tuple[str, ...] = ()
    major: tuple[Literal["==", "!="], str] | None = None
    for part in parts:
        if (found := _contains(part)) is not None:
            contains += found
        elif (isinstance(part, ast.Compare) and isinstance(part.left, ast.Name) and part.left.id == "cuda_major"
              and len(part.ops) == 1 and isinstance(part.ops[0], ast.Eq | ast.NotEq)
              and isinstance(part.comparators[0], ast.Constant)):
            major = ("==" if isinstance(part.ops[0], ast.Eq) else "!=", str(part.comparators[0].value))
        else:
            raise LayoutError(f"{SETUP_PY}:{line}: a requirement rule this tool cannot read: {ast.unparse(test)}")
    if not contains:
        raise LayoutError(f"{SETUP_PY}:{line}: a requirement rule without `\"...\" in req`: {ast.unparse(test)}")
    return contains, major


def _contains(part: ast.expr) -> tuple[str, ...] | None:
    """`"x" in req`, or `"x" in req or "y" in req`: the substrings."""
    if isinstance(part, ast.BoolOp) and isinstance(part.op, ast.Or):
        found = [_contains(value) for value in part.values]
        return None if any(f is None for f in found) else tuple(s for f in found if f for s in f)
    if (isinstance(part, ast.Compare) and len(part.ops) == 1 and isinstance(part.ops[0], ast.In)
            and isinstance(part.left, ast.Constant) and isinstance(part.left.value, str)
            and isinstance(part.comparators[0], ast.Name) and part.comparators[0].id == "req"):
        return (part.left.value,)
    return None


def _rule_action(rule: ast.If) -> tuple[str, str] | None:
    body = [s for s in rule.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) == 1 and isinstance(body[0], ast.Continue):
        return None
    if (len(body) == 1 and isinstance(body[0], ast.Assign) and isinstance(body[0].value, ast.Call)
            and isinstance(body[0].value.func, ast.Attribute) and body[0].value.func.attr == "replace"
            and len(body[0].value.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in body[0].value.args)):
        old, new = (a.value for a in body[0].value.args if isinstance(a, ast.Constant))
        return (str(old), str(new))
    raise LayoutError(f"{SETUP_PY}:{rule.lineno}: a requirement rule action this tool cannot read: "
                      f"{ast.unparse(rule)[:80]}")


@dataclass(frozen=True, kw_only=True, slots=True)
class DeclaredRequirements:
    requirements: tuple[str, ...]  # normalized requirement strings, in setup.py's order, deduplicated
    file: str  # requirements/<device file>
    files_read: tuple[str, ...]  # that file and its -r includes
    dropped: tuple[str, ...]  # lines a CUDA rule removed, as written
    rewritten: tuple[tuple[str, str], ...]  # (as written, as declared)


def declared_requirements(
    rules: RequirementRules, read: Callable[[str], str], *, target_device: str, cuda_major: int | None
) -> DeclaredRequirements:
    """What the build will declare for this device (and CUDA major, for cuda): the device's file
    read as setup.py reads it (raw lines, `-r` relative to requirements/, `--` options and `#`
    lines skipped), the CUDA rules applied to the raw lines, then parsed as setuptools does."""
    for device, line, statement in rules.unmodelled:
        if device == target_device:
            raise LayoutError(f"{SETUP_PY}:{line}: get_requirements changes the {device} set in a way this "
                              f"tool cannot read: {statement[:80]}")
    name = rules.file_for(target_device)
    files: list[str] = []
    raw = _raw_lines(name, read, files, frozenset())
    dropped: list[str] = []
    rewritten: list[tuple[str, str]] = []
    kept: list[tuple[str, int, str]] = []
    for path, number, text in raw:
        if target_device == "cuda" and cuda_major is not None:
            original = text
            removed = False
            for rule in rules.cuda_rules:
                if not rule.applies(text, cuda_major):
                    continue
                if rule.replace is None:
                    removed = True
                    break
                text = text.replace(*rule.replace)
            if removed:
                dropped.append(original)
                continue
            if text != original:
                rewritten.append((original, text))
        kept.append((path, number, text))
    return DeclaredRequirements(
        requirements=tuple(dict.fromkeys(_parse(kept))),
        file=posixpath.join(REQUIREMENTS_DIR, name),
        files_read=tuple(files),
        dropped=tuple(dropped),
        rewritten=tuple(rewritten),
    )


def _raw_lines(name: str, read: Callable[[str], str], files: list[str],
               seen: frozenset[str]) -> list[tuple[str, int, str]]:
    path = posixpath.normpath(posixpath.join(REQUIREMENTS_DIR, name))
    if path in seen:
        raise LayoutError(f"{path}: include cycle")
    files.append(path)
    lines: list[tuple[str, int, str]] = []
    for number, line in enumerate(read(path).strip().split("\n"), start=1):
        if line.startswith("-r "):
            lines += _raw_lines(line.split()[1], read, files, seen | {path})
        elif not line.startswith(("--", "#")) and line.strip():
            lines.append((path, number, line))
    return lines


def _parse(lines: Iterable[tuple[str, int, str]]) -> Iterable[str]:
    """setuptools' reading of install_requires: comments after ` #` dropped, `\\` joins lines."""
    pending = ""
    for path, number, text in lines:
        line = text.strip()
        if line.startswith("#"):
            continue
        line = line.partition(" #")[0].strip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = pending + line, ""
        try:
            yield str(Requirement(line))
        except InvalidRequirement as exc:
            raise LayoutError(f"{path}:{number}: {exc}") from None


# ---------------------------------------------------------------- the built vLLM's Requires-Dist


MAX_REQUIRES_DIST = 10_000  # Requires-Dist lines read per distribution; more is refused, unread
_EXTRA_TEST = re.compile(r"""\bextra\s*==\s*["']([^"']*)["']|["']([^"']*)["']\s*==\s*extra\b""")


@dataclass(frozen=True, kw_only=True, slots=True)
class Unmet:
    """One requirement of the built distribution the environment does not satisfy."""

    requirement: str  # as declared (normalized when it parses)
    name: str  # canonical; "" when the requirement does not parse
    required_by: str  # "vllm", or "fastapi[standard]" for a requirement an extra brings in
    installed: str | None  # the version installed, None when nothing of that name is
    left_out: bool = False  # a torch-family member the lock leaves out on purpose (--without)
    problem: str = ""  # why the line could not be checked at all (its marker, too many lines)

    def describe(self) -> str:
        if self.problem:
            return f"{self.required_by} declares {self.requirement!r}: {self.problem}"
        if not self.name:
            return f"{self.required_by} declares {self.requirement!r}, not a valid requirement"
        have = f"{self.name} {self.installed} is installed" if self.installed else "not installed"
        return f"{self.required_by} requires {self.requirement}: {have}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RequiresDistCheck:
    checked: int  # requirements that apply to the target (markers true), each evaluated
    unmet: tuple[Unmet, ...]  # failures
    expected: tuple[Unmet, ...]  # unmet on purpose: the lock's left-out torch-family members


class _Unevaluable(Exception):
    """A marker packaging cannot evaluate (`python_version ~= "abc"`): the line is unmet."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _Line:
    text: str
    requirement: Requirement | None  # None: not a valid requirement
    extras_tested: frozenset[str] | None  # the extras its marker names; None: unknown (evaluated for each)


class _Distribution:
    """One distribution's Requires-Dist, read and parsed once, its extra lines indexed by extra."""

    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines
        self.by_extra: dict[str, list[int]] = {}
        self.unknown: list[int] = []
        for i, line in enumerate(lines):
            if line.extras_tested is None:
                self.unknown.append(i)
            for extra in line.extras_tested or ():
                self.by_extra.setdefault(extra, []).append(i)


def _parse_line(text: str) -> _Line:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return _Line(text=text, requirement=None, extras_tested=None)
    marker = str(requirement.marker) if requirement.marker is not None else ""
    if "extra" not in marker:
        return _Line(text=text, requirement=requirement, extras_tested=frozenset())
    tests = _EXTRA_TEST.findall(marker)
    if not tests or len(tests) != len(re.findall(r"\bextra\b", marker)):  # `!=`, `in`: evaluated for each extra
        return _Line(text=text, requirement=requirement, extras_tested=None)
    return _Line(text=text, requirement=requirement,
                 extras_tested=frozenset(canonicalize_name(a or b) for a, b in tests))


def _read_lines(lines: Iterable[str]) -> list[str] | None:
    """At most MAX_REQUIRES_DIST lines; None when there are more (the distribution is refused)."""
    read = list(itertools.islice(lines, MAX_REQUIRES_DIST + 1))
    return None if len(read) > MAX_REQUIRES_DIST else read


def check_requires_dist(
    declared: Iterable[str],
    installed: Mapping[str, str],
    requires_of: Callable[[str], Iterable[str]],
    *,
    environment: Mapping[str, str],
    left_out: Iterable[str] = (),
    owner: str = "vllm",
) -> RequiresDistCheck:
    """The declared requirements (a distribution's Requires-Dist) against the installed versions
    (canonical name -> version). Markers are evaluated for `environment` (the lock's target) with
    no extra of the owner selected: the lock names none of vLLM's extras, so `extra == "..."`
    lines are not required. A requirement with extras (`fastapi[standard]`) also requires what
    those extras add to the installed distribution's own Requires-Dist (`requires_of(name)`, read
    once per distribution, at most MAX_REQUIRES_DIST lines), followed to any depth. A prerelease
    satisfies a specifier (a torch nightly is one). A marker that cannot be evaluated makes its
    line unmet. Only the owner's own requirement of a left-out torch-family name (torch*,
    pytorch-*) is expected; anything else unmet is a failure."""
    skipped = {canonicalize_name(name) for name in left_out if _family_name(canonicalize_name(name))}
    unmet: list[Unmet] = []
    expected: list[Unmet] = []
    own = _read_lines(declared)
    if own is None:
        unmet.append(Unmet(requirement=f"{MAX_REQUIRES_DIST + 1}+ lines", name="", required_by=owner, installed=None,
                           problem=f"more than {MAX_REQUIRES_DIST} Requires-Dist lines (not read)"))
        return RequiresDistCheck(checked=0, unmet=tuple(unmet), expected=())
    distributions: dict[str, _Distribution | None] = {}

    def distribution(name: str) -> _Distribution | None:
        if name not in distributions:
            lines = _read_lines(requires_of(name))
            distributions[name] = None if lines is None else _Distribution([_parse_line(t) for t in lines])
        return distributions[name]

    added: dict[tuple[str, str], list[_Line]] = {}

    def added_by(name: str, extra: str, found: _Distribution) -> list[_Line]:
        """The lines of `name` that `extra` brings in, computed once per (name, extra)."""
        if (name, extra) not in added:
            picked = sorted({*found.by_extra.get(extra, ()), *found.unknown})
            added[name, extra] = [found.lines[i] for i in picked if _added_by(found.lines[i], extra, environment)]
        return added[name, extra]

    queue: deque[tuple[_Line, str, frozenset[str]]] = deque((_parse_line(t), owner, frozenset()) for t in own)
    seen: set[tuple[str, str]] = set()
    checked = 0
    while queue:
        line, required_by, extras = queue.popleft()
        requirement = line.requirement
        if requirement is None:
            unmet.append(Unmet(requirement=line.text.strip(), name="", required_by=required_by, installed=None))
            continue
        name = canonicalize_name(requirement.name)
        try:
            applies = _applies(requirement, environment, extras)
        except _Unevaluable as exc:
            unmet.append(Unmet(requirement=line.text.strip(), name=name, required_by=required_by, installed=None,
                               problem=f"its marker cannot be evaluated ({exc})"))
            continue
        if not applies:
            continue
        if (name, str(requirement)) in seen:
            continue
        seen.add((name, str(requirement)))
        checked += 1
        version = installed.get(name)
        if version is None or not _satisfies(requirement, version):
            shown = requirement
            if extras:  # `; extra == "standard"` says nothing the required_by does not (a copy: lines are shared)
                shown = Requirement(str(requirement))
                shown.marker = None
            found = Unmet(requirement=str(shown), name=name, required_by=required_by, installed=version,
                          left_out=name in skipped and required_by == owner)
            (expected if found.left_out else unmet).append(found)
            continue
        if requirement.extras:
            wanted = frozenset(canonicalize_name(e) for e in requirement.extras)
            by = f"{name}[{','.join(sorted(wanted))}]"
            dist = distribution(name)
            if dist is None:
                unmet.append(Unmet(requirement=str(requirement), name=name, required_by=required_by, installed=version,
                                   problem=f"{name} declares more than {MAX_REQUIRES_DIST} Requires-Dist lines "
                                           "(not read)"))
                continue
            lines = {line.text: line for extra in sorted(wanted) for line in added_by(name, extra, dist)}
            queue.extend((line, by, wanted) for line in lines.values())
    return RequiresDistCheck(checked=checked, unmet=tuple(unmet), expected=tuple(expected))


def _family_name(name: str) -> bool:
    """The name rule of a torch-family member a lock may leave out (torch_family's `torch*`; the
    index's own projects as pytorch-*)."""
    return name.startswith(("torch", "pytorch-"))


def _satisfies(requirement: Requirement, version: str) -> bool:
    try:
        return requirement.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return not requirement.specifier  # a version we cannot read meets only "any version"


def _applies(requirement: Requirement, environment: Mapping[str, str], extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    try:
        return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras or {""})
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidVersion, ValueError, TypeError) as exc:
        raise _Unevaluable(str(exc) or type(exc).__name__) from None


def _added_by(line: _Line, extra: str, environment: Mapping[str, str]) -> bool:
    """Whether a line of a distribution's Requires-Dist is one that `extra` brings in (true with
    it, false without any): the unconditional lines came with the distribution itself, and the
    lock's package check covers those. An unreadable line, or one whose marker cannot be
    evaluated, is taken in (and reported)."""
    requirement = line.requirement
    if requirement is None:
        return True
    if requirement.marker is None:
        return False
    try:
        return _applies(requirement, environment, frozenset({extra})) and not _applies(
            requirement, environment, frozenset())
    except _Unevaluable:
        return True
