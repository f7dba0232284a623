"""CMake read as CMake: a tokenizer and an evaluator for the part of the language that decides
which external sources a configure step fetches. Pure: files come from a listing and a reader.

The evaluator walks the commands in order for one set of facts (the locked target): `set()`,
`include()` followed into the tree, `if()` evaluated. What it cannot know (a compiler version, a
CPU flag read from /proc/cpuinfo, a variable computed by a function it does not run) is *unknown*:
an `if()` on it keeps both branches and is reported when a pin was found inside. A variable that
nothing set is undefined (false), as in a clean build; so is every `ENV{...}`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vllm_lock import cmake_regex

SOURCE_ROOT = "/vllm-lock-source"  # stands for the tree's root in paths the evaluator builds
BINARY_ROOT = "/vllm-lock-build"  # the build directory: empty before configure


class CMakeError(ValueError):
    """Text the reader cannot read, or a pin it cannot lock; the message names file and line."""


# ---------------------------------------------------------------------------------- tokens

ArgumentKind = Literal["quoted", "unquoted", "bracket", "paren"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Argument:
    text: str  # as written, without quotes or brackets (escapes and references unprocessed)
    kind: ArgumentKind
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    name: str  # lower case: CMake command names are case-insensitive
    arguments: tuple[Argument, ...]
    line: int

    def raw(self) -> str:
        """The arguments as written (comments and line breaks dropped)."""
        shown = [f'"{a.text}"' if a.kind == "quoted" else f"[[{a.text}]]" if a.kind == "bracket" else a.text
                 for a in self.arguments]
        return re.sub(r"\( | \)", lambda m: m.group().strip(), " ".join(shown))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$(ENV|CACHE)?\{")
_BRACKET_OPEN = re.compile(r"\[(=*)\[")


def tokenize(text: str, path: str = "CMakeLists.txt") -> tuple[Command, ...]:
    """Every command invocation of a CMake file, comments dropped."""
    return tuple(_Tokenizer(text, path).commands())


class _Tokenizer:
    def __init__(self, text: str, path: str) -> None:
        self.text = text.replace("\r\n", "\n")
        self.path = path
        self.pos = 0
        self.line = 1

    def fail(self, message: str, line: int | None = None) -> CMakeError:
        return CMakeError(f"{self.path}:{line or self.line}: {message}")

    def commands(self) -> Iterator[Command]:
        text = self.text
        while True:
            self.skip_space_and_comments(newlines=True)
            if self.pos >= len(text):
                return
            match = _IDENTIFIER.match(text, self.pos)
            if match is None:
                raise self.fail(f"expected a command, found {text[self.pos]!r}")
            start = self.line
            self.pos = match.end()
            while self.pos < len(text) and text[self.pos] in " \t":
                self.pos += 1
            if self.pos >= len(text) or text[self.pos] != "(":
                raise self.fail(f"expected '(' after {match.group()}")
            self.pos += 1
            yield Command(name=match.group().lower(), arguments=self.arguments(match.group(), start), line=start)

    def skip_space_and_comments(self, *, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t":
                self.pos += 1
            elif char == "\n" and newlines:
                self.line += 1
                self.pos += 1
            elif char == "#":
                self.comment()
            else:
                return

    def comment(self) -> None:
        bracket = _BRACKET_OPEN.match(self.text, self.pos + 1)
        if bracket:
            self.pos = bracket.end()
            self.bracket_body(bracket.group(1), "bracket comment")
            return
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def bracket_body(self, equals: str, what: str) -> str:
        start = self.line
        close = "]" + equals + "]"
        end = self.text.find(close, self.pos)
        if end < 0:
            raise self.fail(f"unterminated {what}", start)
        body = self.text[self.pos:end]
        self.line += body.count("\n")
        self.pos = end + len(close)
        return body

    def arguments(self, name: str, start: int) -> tuple[Argument, ...]:
        text = self.text
        found: list[Argument] = []
        depth = 0
        while True:
            self.skip_space_and_comments(newlines=True)
            if self.pos >= len(text):
                raise self.fail(f"{name}( is never closed", start)
            char = text[self.pos]
            line = self.line
            if char == "(":
                depth += 1
                self.pos += 1
                found.append(Argument(text="(", kind="paren", line=line))
            elif char == ")":
                self.pos += 1
                if depth == 0:
                    return tuple(found)
                depth -= 1
                found.append(Argument(text=")", kind="paren", line=line))
            elif char == '"':
                self.pos += 1
                found.append(Argument(text=self.quoted(), kind="quoted", line=line))
            elif bracket := _BRACKET_OPEN.match(text, self.pos):
                self.pos = bracket.end()
                body = self.bracket_body(bracket.group(1), "bracket argument")
                found.append(Argument(text=body[1:] if body.startswith("\n") else body, kind="bracket", line=line))
            else:
                found.append(Argument(text=self.unquoted(), kind="unquoted", line=line))

    def quoted(self) -> str:
        text = self.text
        start = self.pos
        first_line = self.line
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\":
                if self.pos + 1 < len(text) and text[self.pos + 1] == "\n":
                    self.line += 1
                self.pos += 2
                continue
            if char == "\n":
                self.line += 1
            elif char == '"':
                self.pos += 1
                return text[start:self.pos - 1]
            self.pos += 1
        raise self.fail("unterminated quoted argument", first_line)

    def unquoted(self) -> str:
        text = self.text
        start = self.pos
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\":
                self.pos += 2
            elif char == '"':  # legacy: a quoted part inside an unquoted argument (-DX="a b")
                self.pos += 1
                self.quoted()
            elif char in " \t\n()#":
                break
            else:
                self.pos += 1
        return text[start:self.pos]


# ---------------------------------------------------------------------------------- structure


@dataclass(frozen=True, kw_only=True, slots=True)
class _If:
    branches: tuple[tuple[Command | None, tuple[_Node, ...]], ...]  # None: else()
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class _Body:
    """function/macro definitions and loops: not run (their effects become unknown)."""

    header: Command
    body: tuple[_Node, ...]


_Node = Command | _If | _Body
_OPENERS = {"function": "endfunction", "macro": "endmacro", "foreach": "endforeach", "while": "endwhile"}


def _structure(commands: Sequence[Command], path: str) -> tuple[_Node, ...]:
    nodes, rest = _block(list(commands), 0, path, closer=None, depth=0)
    assert rest == len(commands)
    return nodes


def _block(commands: list[Command], index: int, path: str, closer: str | None,
           depth: int) -> tuple[tuple[_Node, ...], int]:
    if depth > MAX_NESTING and index > 0:
        opener = commands[index - 1]
        raise CMakeError(f"{path}:{opener.line}: blocks nested deeper than {MAX_NESTING}")
    nodes: list[_Node] = []
    while index < len(commands):
        command = commands[index]
        name = command.name
        if name in ("elseif", "else", "endif") or name in _OPENERS.values() or name == "endblock":
            if closer is not None and (name == closer or (closer == "endif" and name in ("elseif", "else"))):
                return tuple(nodes), index
            raise CMakeError(f"{path}:{command.line}: {name}() without its opening command")
        if name == "if":
            node, index = _if_node(commands, index, path, depth)
            nodes.append(node)
            continue
        if name == "block":
            body, end = _block(commands, index + 1, path, "endblock", depth + 1)
            nodes.extend(body)  # scopes aside, a block runs in place
            index = _closed(commands, end, path, command, "endblock") + 1
            continue
        if name in _OPENERS:
            body, end = _block(commands, index + 1, path, _OPENERS[name], depth + 1)
            nodes.append(_Body(header=command, body=body))
            index = _closed(commands, end, path, command, _OPENERS[name]) + 1
            continue
        nodes.append(command)
        index += 1
    return tuple(nodes), index  # at the end of the file: the opener reports what is unclosed


def _closed(commands: list[Command], index: int, path: str, opener: Command, closer: str) -> int:
    if index >= len(commands) or commands[index].name != closer:
        raise CMakeError(f"{path}:{opener.line}: {opener.name}() is never closed by {closer}()")
    return index


def _if_node(commands: list[Command], index: int, path: str, depth: int) -> tuple[_If, int]:
    opener = commands[index]
    branches: list[tuple[Command | None, tuple[_Node, ...]]] = []
    condition: Command | None = opener
    index += 1
    while True:
        body, index = _block(commands, index, path, "endif", depth + 1)
        branches.append((condition, body))
        if index >= len(commands):
            raise CMakeError(f"{path}:{opener.line}: if() is never closed by endif()")
        closing = commands[index]
        index += 1
        if closing.name == "endif":
            return _If(branches=tuple(branches), line=opener.line), index
        if condition is None:
            raise CMakeError(f"{path}:{closing.line}: {closing.name}() after else()")
        condition = closing if closing.name == "elseif" else None


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True, slots=True)
class CMakePin:
    """A git source a configure step fetches, as written."""

    name: str
    repository: str
    ref: str
    submodules: tuple[str, ...] | None  # GIT_SUBMODULES when given (empty: none at all)
    source_dir_variable: str | None  # the variable a declaration of this name in the same file
    # takes its SOURCE_DIR from (the local-tree override), when one does
    file: str
    line: int
    command: str
    conditional: bool  # found inside a branch of an if() that could not be decided


@dataclass(frozen=True, kw_only=True, slots=True)
class Undecided:
    """An if()/elseif() condition that could not be evaluated and had a pin in its branches."""

    file: str
    line: int
    condition: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Stop:
    file: str
    line: int
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    pins: tuple[CMakePin, ...]
    undecided: tuple[Undecided, ...]
    included: tuple[str, ...]  # the files read, in order of first inclusion
    stopped: Stop | None  # every path ended in message(FATAL_ERROR): configure fails for these facts


# ---------------------------------------------------------------------------------- values

_Value = str | None  # None: unknown
_TRUE = {"1", "ON", "YES", "TRUE", "Y"}
_FALSE = {"0", "OFF", "NO", "FALSE", "N", "IGNORE", "NOTFOUND", ""}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class _UnknownValue(Exception):
    """A reference to something the evaluator cannot know."""


def _is_false_constant(value: str) -> bool:
    upper = value.upper()
    return upper in _FALSE or upper.endswith("-NOTFOUND")


def _truth_constant(value: str) -> bool | None:
    upper = value.upper()
    if upper in _TRUE or (_NUMBER.match(value) and float(value) != 0):
        return True
    if _is_false_constant(value) or (_NUMBER.match(value) and float(value) == 0):
        return False
    return None


@dataclass(kw_only=True)
class _State:
    variables: dict[str, _Value]
    env: dict[str, _Value] = field(default_factory=dict)
    unknown_prefixes: set[str] = field(default_factory=set)
    declared: set[str] = field(default_factory=set)  # FetchContent names declared on this path

    def copy(self) -> _State:
        return _State(variables=dict(self.variables), env=dict(self.env),
                      unknown_prefixes=set(self.unknown_prefixes), declared=set(self.declared))


def _merge(states: list[_State]) -> _State:
    first = states[0]
    if len(states) == 1:
        return first
    merged = first.copy()
    for other in states[1:]:
        for table, theirs in ((merged.variables, other.variables), (merged.env, other.env)):
            for key in set(table) | set(theirs):
                if key not in table or key not in theirs or table[key] != theirs[key]:
                    table[key] = None
        merged.unknown_prefixes |= other.unknown_prefixes
        merged.declared |= other.declared
    return merged


# Commands that set no variable (or only ones named by a fixed rule below); every other command
# the evaluator does not run makes each bare word among its arguments an unknown variable.
_NO_EFFECT = frozenset({
    "message", "cmake_minimum_required", "cmake_policy", "project", "install", "add_library",
    "add_executable", "add_custom_target", "add_custom_command", "add_dependencies", "add_compile_definitions",
    "add_compile_options", "add_definitions", "add_link_options", "include_directories", "link_directories",
    "link_libraries", "target_compile_definitions", "target_compile_options", "target_include_directories",
    "target_link_libraries", "target_link_options", "target_sources", "target_compile_features",
    "set_target_properties", "set_source_files_properties", "set_property", "set_directory_properties",
    "enable_language", "enable_testing", "add_test", "include_guard", "mark_as_advanced", "fetchcontent_declare",
    "fetchcontent_makeavailable", "fetchcontent_populate", "fetchcontent_getproperties", "externalproject_add",
    "return", "set", "unset", "option", "list", "include", "break", "continue", "configure_file",
})
_CONFIGURE_DETECTED = ("CMAKE_",)  # variables CMake itself fills in at configure time
_PIN_COMMANDS = frozenset({"fetchcontent_declare", "fetchcontent_populate", "externalproject_add"})
_KEYWORDS = frozenset({
    "GIT_REPOSITORY", "GIT_TAG", "GIT_SUBMODULES", "GIT_SUBMODULES_RECURSE", "GIT_SHALLOW", "GIT_PROGRESS",
    "GIT_CONFIG", "GIT_REMOTE_NAME", "GIT_REMOTE_UPDATE_STRATEGY", "SOURCE_DIR", "BINARY_DIR", "SUBBUILD_DIR",
    "SOURCE_SUBDIR", "URL", "URL_HASH", "URL_MD5", "PREFIX", "QUIET", "SYSTEM", "EXCLUDE_FROM_ALL",
    "CMAKE_ARGS", "DEPENDS", "OVERRIDE_FIND_PACKAGE", "FIND_PACKAGE_ARGS", "TIMEOUT", "SVN_REPOSITORY",
    "HG_REPOSITORY", "CVS_REPOSITORY", "DOWNLOAD_COMMAND", "UPDATE_COMMAND", "PATCH_COMMAND",
    "CONFIGURE_COMMAND", "BUILD_COMMAND", "INSTALL_COMMAND", "TEST_COMMAND", "BUILD_IN_SOURCE",
    "BUILD_ALWAYS", "BUILD_BYPRODUCTS", "LOG_DOWNLOAD", "LOG_BUILD", "LOG_CONFIGURE", "LOG_INSTALL",
    "INSTALL_DIR", "DOWNLOAD_DIR", "STAMP_DIR", "TMP_DIR", "LIST_SEPARATOR", "TLS_VERIFY",
})
_KEYWORD_SHAPE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
# Bounds on what a hostile tree can make the evaluator do (vLLM's own CMake, every release in
# tests/real, stays far below each): exceeding one is a CMakeError naming file and line.
_MAX_INCLUDE_DEPTH = 40
MAX_COMMANDS = 200_000  # commands and conditions evaluated, over every file and branch
MAX_INCLUDES = 2_000  # include() calls followed into the tree
MAX_VALUE_LENGTH = 1 << 20  # characters of one variable's value or one expanded argument
MAX_COPIED = 10_000_000  # variables copied for the branches of unknown conditions, all told
MAX_REGEX_PATTERN = cmake_regex.MAX_PATTERN_LENGTH  # characters of one MATCHES pattern
MAX_REGEX_SUBJECT = cmake_regex.MAX_SUBJECT_LENGTH  # characters of the string it is matched against
MAX_REGEX_WORK = 5_000_000  # regex states visited by every MATCHES, all told (vLLM 0.33.0: 68)
# blocks inside blocks (in one file, and over the include() chain), ${} inside ${},
# parentheses inside a condition: low enough that Python's own recursion limit is never met
MAX_NESTING = 100


def evaluate(
    entry: str,
    paths: Collection[str],
    read: Callable[[str], str],
    *,
    facts: Mapping[str, str],
) -> Reading:
    """Walk `entry` (and what it includes) for the given facts (variables as `-D` would set
    them; they outlive any command the evaluator does not run). `paths` lists the tree's files
    (for include() and EXISTS); `read` returns one file's text."""
    evaluator = _Evaluator(frozenset(paths), read, facts)
    state = _State(variables=dict(facts))
    for name, value in (("CMAKE_SOURCE_DIR", SOURCE_ROOT), ("PROJECT_SOURCE_DIR", SOURCE_ROOT),
                        ("CMAKE_CURRENT_SOURCE_DIR", SOURCE_ROOT), ("CMAKE_BINARY_DIR", BINARY_ROOT),
                        ("CMAKE_CURRENT_BINARY_DIR", BINARY_ROOT), ("CMAKE_SYSTEM_NAME", "Linux"),
                        ("CMAKE_HOST_SYSTEM_NAME", "Linux"), ("UNIX", "1"), ("LINUX", "1")):
        state.variables.setdefault(name, value)
    end = evaluator.run_file(entry, state, depth=0)
    pins = tuple(dict.fromkeys(evaluator.pins))
    unique: dict[tuple[str, str, str, tuple[str, ...] | None], CMakePin] = {}
    for pin in pins:
        unique.setdefault((pin.name.lower(), pin.repository, pin.ref, pin.submodules), pin)
    return Reading(
        pins=tuple(unique.values()),
        undecided=tuple(dict.fromkeys(evaluator.undecided)),
        included=tuple(evaluator.included),
        stopped=evaluator.fatal[-1] if end is None and evaluator.fatal else None,
    )


@dataclass(kw_only=True)
class _Frame:
    path: str
    returned: list[_State] = field(default_factory=list)
    source_dirs: dict[str, str] = field(default_factory=dict)


class _Evaluator:
    def __init__(self, paths: frozenset[str], read: Callable[[str], str], facts: Mapping[str, str]) -> None:
        self.paths = paths
        self.directories = {posixpath.dirname(p) for p in paths}
        for directory in list(self.directories):
            while directory:
                directory = posixpath.dirname(directory)
                self.directories.add(directory)
        self.read = read
        self.protected = frozenset(facts)
        self.pins: list[CMakePin] = []
        self.undecided: list[Undecided] = []
        self.included: list[str] = []
        self.fatal: list[Stop] = []
        self.functions: set[str] = set()
        self.conditional = 0
        self.commands_run = 0
        self.includes_run = 0
        self.nesting = 0
        self.copied = 0
        self.regex_work = 0
        self.regexes: dict[str, cmake_regex.Regex | None] = {}
        self.where = ""  # file:line of the command being evaluated, for the bounds' errors

    def step(self, path: str, line: int) -> None:
        """One more command or condition evaluated: the work budget's count."""
        self.where = f"{path}:{line}"
        self.commands_run += 1
        if self.commands_run > MAX_COMMANDS:
            raise CMakeError(f"{self.where}: more than {MAX_COMMANDS} commands evaluated (include() or "
                             f"branches repeated beyond any real configure step)")

    def matches(self, pattern: str, subject: str) -> bool | None:
        """`subject MATCHES pattern`, in time linear in the subject (cmake_regex), within bounds:
        a pattern or string over its length, or matching work over the budget, is a CMakeError
        (its caller adds file and line). A pattern CMake would not compile is unknown."""
        shown = pattern if len(pattern) <= 80 else pattern[:80] + "..."
        if len(pattern) > MAX_REGEX_PATTERN:
            raise CMakeError(f"MATCHES {shown!r}: a regular expression longer than {MAX_REGEX_PATTERN} characters")
        if len(subject) > MAX_REGEX_SUBJECT:
            raise CMakeError(f"MATCHES {shown!r}: the string matched is longer than {MAX_REGEX_SUBJECT} characters")
        if pattern not in self.regexes:
            try:
                self.regexes[pattern] = cmake_regex.compile_pattern(pattern)
            except cmake_regex.RegexSyntaxError:
                self.regexes[pattern] = None
        regex = self.regexes[pattern]
        if regex is None:
            return None

        def spend(work: int) -> None:
            self.regex_work += work
            if self.regex_work > MAX_REGEX_WORK:
                raise CMakeError(f"MATCHES {shown!r}: more than {MAX_REGEX_WORK} steps of regular-expression "
                                 "matching (beyond any real configure step)")

        return cmake_regex.search(regex, subject, spend)

    def bounded(self, value: str) -> str:
        if len(value) > MAX_VALUE_LENGTH:
            raise CMakeError(f"{self.where}: a value longer than {MAX_VALUE_LENGTH} characters")
        return value

    # -------------------------------------------------------------- files and blocks

    def run_file(self, path: str, state: _State, depth: int) -> _State | None:
        if depth > _MAX_INCLUDE_DEPTH:
            raise CMakeError(f"{path}: include() nested deeper than {_MAX_INCLUDE_DEPTH} files")
        if depth > 0:
            self.includes_run += 1
            if self.includes_run > MAX_INCLUDES:
                raise CMakeError(f"{self.where}: more than {MAX_INCLUDES} include() calls followed")
        commands = tokenize(self.read(path), path)
        nodes = _structure(commands, path)
        if path not in self.included:
            self.included.append(path)
        frame = _Frame(path=path, source_dirs=_source_dir_variables(commands))
        saved = {k: state.variables.get(k) for k in ("CMAKE_CURRENT_LIST_DIR", "CMAKE_CURRENT_LIST_FILE")}
        absolute = posixpath.join(SOURCE_ROOT, path)
        state.variables["CMAKE_CURRENT_LIST_FILE"] = absolute
        state.variables["CMAKE_CURRENT_LIST_DIR"] = posixpath.dirname(absolute)
        end = self.run_block(nodes, state, frame, depth)
        finished = [s for s in [end, *frame.returned] if s is not None]
        if not finished:
            return None
        result = _merge(finished)
        for key, value in saved.items():
            if value is None:
                result.variables.pop(key, None)
            else:
                result.variables[key] = value
        return result

    def run_block(self, nodes: Sequence[_Node], state: _State, frame: _Frame, depth: int) -> _State | None:
        """Run nodes in order; None when every path stopped (return() or FATAL_ERROR)."""
        self.nesting += 1
        try:
            return self.run_nodes(nodes, state, frame, depth)
        finally:
            self.nesting -= 1

    def run_nodes(self, nodes: Sequence[_Node], state: _State, frame: _Frame, depth: int) -> _State | None:
        if self.nesting > MAX_NESTING:
            raise CMakeError(f"{self.where}: blocks nested deeper than {MAX_NESTING} over the included files")
        current: _State | None = state
        for node in nodes:
            if current is None:
                return None
            if isinstance(node, _If):
                current = self.run_if(node.branches, current, frame, depth)
            elif isinstance(node, _Body):
                self.step(frame.path, node.header.line)
                self.skip_body(node, current, frame)
            else:
                self.step(frame.path, node.line)
                current = self.run_command(node, current, frame, depth)
        return current

    def run_if(self, branches: Sequence[tuple[Command | None, tuple[_Node, ...]]], state: _State,
               frame: _Frame, depth: int) -> _State | None:
        """The first branch whose condition holds; an unknown condition runs its branch on a copy
        and goes on to the next (a loop, not recursion: an elseif() chain has no depth limit)."""
        ended: list[_State | None] = []  # the branches run for unknown conditions
        forks: list[tuple[Command, int]] = []  # each unknown condition, with the pin count before it
        current: _State | None = state
        try:
            for condition, body in branches:
                if condition is None:
                    value: bool | None = True
                else:
                    self.step(frame.path, condition.line)
                    value = self.condition(condition, state, frame)
                if value is False:
                    continue
                if value is True:
                    current = self.run_block(body, state, frame, depth)
                    break
                assert condition is not None
                forks.append((condition, len(self.pins)))
                self.conditional += 1
                self.copied += len(state.variables) + len(state.env)
                if self.copied > MAX_COPIED:
                    raise CMakeError(f"{self.where}: more than {MAX_COPIED} variables copied for the branches "
                                     f"of conditions it cannot decide")
                ended.append(self.run_block(body, state.copy(), frame, depth))
        finally:
            self.conditional -= len(forks)
        for condition, before in reversed(forks):  # the innermost first, as the nesting reads
            if len(self.pins) > before:
                self.undecided.append(Undecided(file=frame.path, line=condition.line,
                                                condition=f"{condition.name}({condition.raw()})"))
        alive = [s for s in (*ended, current) if s is not None]
        return _merge(alive) if alive else None

    def skip_body(self, node: _Body, state: _State, frame: _Frame) -> None:
        kind = node.header.name
        if kind in ("function", "macro"):
            names = self.expand_arguments(node.header.arguments[:1], state)
            if names and names[0] is not None:
                self.functions.add(names[0].lower())
        for command in _walk(node.body):
            if command.name in _PIN_COMMANDS and _has_options(command):
                raise CMakeError(f"{frame.path}:{command.line}: {command.name}() inside {kind}() "
                                 f"(line {node.header.line}): cannot tell when or with what it runs")
            if kind in ("foreach", "while"):  # whatever the loop sets is unknown afterwards
                self.forget_mentioned(command, state)

    # -------------------------------------------------------------- commands

    def run_command(self, command: Command, state: _State, frame: _Frame, depth: int) -> _State | None:
        name = command.name
        where = f"{frame.path}:{command.line}"
        if name == "set":
            self.set(command, state)
        elif name == "unset":
            for value in self.expand_arguments(command.arguments[:1], state):
                if value is not None:
                    self.assign(state, value, None, unset=True)
        elif name == "option":
            values = self.expand_arguments(command.arguments, state)
            if values and values[0] is not None and values[0] not in state.variables:
                state.variables[values[0]] = values[2] if len(values) > 2 and values[2] is not None else "OFF"
        elif name == "list":
            self.list_command(command, state)
        elif name == "include":
            return self.include(command, state, frame, depth)
        elif name == "return":
            frame.returned.append(state)
            return None
        elif name == "message":
            values = self.expand_arguments(command.arguments, state)
            if values and values[0] == "FATAL_ERROR":
                text = " ".join(v if v is not None else "<unknown>" for v in values[1:])
                self.fatal.append(Stop(file=frame.path, line=command.line, message=text))
                return None
        elif name == "find_package":
            values = self.expand_arguments(command.arguments[:1], state)
            if values and values[0]:
                state.unknown_prefixes |= {values[0] + "_", values[0].upper() + "_"}
        elif name in _PIN_COMMANDS:
            self.pin(command, state, frame, where)
        elif name in ("fetchcontent_makeavailable", "fetchcontent_getproperties"):
            self.populated(command, state)
        if name not in _NO_EFFECT:
            self.forget_mentioned(command, state)
        return state

    def set(self, command: Command, state: _State) -> None:
        values = self.expand_arguments(command.arguments, state)
        if not values or values[0] is None:
            return
        target, rest = values[0], values[1:]
        cache = force = False
        if rest and rest[-1] == "PARENT_SCOPE":
            rest = rest[:-1]
        if "CACHE" in rest:
            cut = rest.index("CACHE")
            force = "FORCE" in rest[cut:]
            rest, cache = rest[:cut], True
        if cache and not force and target in state.variables:
            return  # a cache entry (-D) already there is kept
        if not rest:
            self.assign(state, target, None, unset=True)
            return
        value = None if any(v is None for v in rest) else ";".join(v for v in rest if v is not None)
        self.assign(state, target, value)

    def assign(self, state: _State, target: str, value: _Value, *, unset: bool = False) -> None:
        env = re.fullmatch(r"ENV\{(.*)\}", target)
        table, key = (state.env, env.group(1)) if env else (state.variables, target)
        if unset:
            table.pop(key, None)
        else:
            table[key] = None if value is None else self.bounded(value)

    def list_command(self, command: Command, state: _State) -> None:
        values = self.expand_arguments(command.arguments, state)
        if len(values) >= 2 and values[0] in ("APPEND", "PREPEND") and values[1] is not None:
            target, items = values[1], values[2:]
            current = state.variables.get(target, "")
            if current is None or any(v is None for v in items):
                state.variables[target] = None
                return
            parts = [p for p in (current or "").split(";") if p]
            added = [v for v in items if v]
            joined = ";".join([*parts, *added] if values[0] == "APPEND" else [*added, *parts])
            state.variables[target] = self.bounded(joined)
            return
        self.forget_mentioned(command, state)

    def include(self, command: Command, state: _State, frame: _Frame, depth: int) -> _State | None:
        where = f"{frame.path}:{command.line}"
        values = self.expand_arguments(command.arguments, state)
        if not values:
            raise CMakeError(f"{where}: include() names no file")
        if values[0] is None:
            raise CMakeError(f"{where}: cannot tell which file include({command.raw()}) reads")
        target, optional = values[0], "OPTIONAL" in values[1:]
        if "/" not in target and not target.endswith(".cmake"):
            module_path = state.variables.get("CMAKE_MODULE_PATH") or ""
            for directory in module_path.split(";"):
                relative = _in_tree(posixpath.join(directory, target + ".cmake"))
                if relative in self.paths:
                    return self.run_file(relative, state, depth + 1)
            return state  # one of CMake's own modules (FetchContent, CheckCXXCompilerFlag, ...)
        current_dir = state.variables.get("CMAKE_CURRENT_SOURCE_DIR") or SOURCE_ROOT
        relative = _in_tree(posixpath.join(current_dir, target))
        if relative is not None and relative in self.paths:
            return self.run_file(relative, state, depth + 1)
        if optional:
            return state
        raise CMakeError(f"{where}: include({command.raw()}) names {target}, which is not in the tree")

    def pin(self, command: Command, state: _State, frame: _Frame, where: str) -> None:
        if not _has_options(command):
            self.populated(command, state)  # FetchContent_Populate(name): the declared one
            return
        values = self.expand_arguments(command.arguments, state)
        if values[0] is None:
            raise CMakeError(f"{where}: cannot read the name in {command.name}({command.raw()})")
        name = values[0]
        options: dict[str, list[_Value]] = {}
        keyword: str | None = None
        for value in values[1:]:
            if value is not None and (value in _KEYWORDS or _KEYWORD_SHAPE.match(value)):
                keyword = value
                options.setdefault(keyword, [])
            elif keyword is not None:
                options[keyword].append(value)
        self.populated(command, state)
        declare = command.name == "fetchcontent_declare"
        if declare and name.lower() in state.declared:
            return  # FetchContent: the first declaration of a name wins, later ones are ignored
        if "GIT_REPOSITORY" not in options:
            if "URL" in options or any(k.endswith("_REPOSITORY") for k in options):
                raise CMakeError(f"{where}: {name} is fetched from something other than git "
                                 f"({command.name}); only git sources can be locked")
            if declare:
                state.declared.add(name.lower())
            return  # SOURCE_DIR only: a local tree, nothing is fetched
        repository = _single(options, "GIT_REPOSITORY", name, where)
        if "GIT_TAG" not in options:
            raise CMakeError(f"{where}: {name} names no GIT_TAG (it would follow the default branch)")
        ref = _single(options, "GIT_TAG", name, where)
        submodules = options.get("GIT_SUBMODULES")
        if submodules is not None and any(s is None for s in submodules):
            raise CMakeError(f"{where}: cannot read the GIT_SUBMODULES of {name}")
        if declare:
            state.declared.add(name.lower())
        self.pins.append(CMakePin(
            name=name,
            repository=repository,
            ref=ref,
            submodules=None if submodules is None else tuple(s for s in submodules if s),
            source_dir_variable=frame.source_dirs.get(name.lower()),
            file=frame.path,
            line=command.line,
            command=command.name,
            conditional=self.conditional > 0,
        ))

    def populated(self, command: Command, state: _State) -> None:
        """FetchContent fills in <name>_SOURCE_DIR and friends: unknown to us, never undefined."""
        for value in self.expand_arguments(command.arguments[:1] if _has_options(command) else command.arguments,
                                           state):
            if value:
                for suffix in ("_SOURCE_DIR", "_BINARY_DIR", "_POPULATED"):
                    state.variables[value.lower() + suffix] = None

    def forget_mentioned(self, command: Command, state: _State) -> None:
        """Bare words given to a command we do not run may be variables it sets."""
        for argument in command.arguments:
            word = argument.text
            if argument.kind == "unquoted" and _IDENTIFIER.fullmatch(word) and _truth_constant(word) is None:
                if word not in self.protected:
                    state.variables[word] = None

    # -------------------------------------------------------------- arguments

    def expand_arguments(self, arguments: Sequence[Argument], state: _State) -> list[_Value]:
        values: list[_Value] = []
        for argument in arguments:
            if argument.kind in ("bracket", "paren"):
                values.append(argument.text)
                continue
            try:
                values.extend(self.expand(argument.text, state, split=argument.kind == "unquoted"))
            except _UnknownValue:
                values.append(None)
        return values

    def expand(self, text: str, state: _State, *, split: bool) -> list[str]:
        value = self.substitute(text, state)
        if not split:
            return [value]
        return [part.replace("\\;", ";") for part in re.split(r"(?<!\\);", value) if part]

    def substitute(self, text: str, state: _State, nesting: int = 0) -> str:
        if nesting > MAX_NESTING:
            raise CMakeError(f"{self.where}: variable references nested deeper than {MAX_NESTING}")
        out: list[str] = []
        length = 0
        index = 0
        while index < len(text):
            if length > MAX_VALUE_LENGTH:
                self.bounded("".join(out))
            char = text[index]
            if char == "\\" and index + 1 < len(text):
                following = text[index + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r", ";": "\\;", "\n": ""}.get(following, following))
                index += 2
                continue
            reference = _REFERENCE.match(text, index)
            if reference:
                start = reference.end()
                end = _matching_brace(text, start)
                if end < 0:
                    out.append(text[index:])
                    break
                name = self.substitute(text[start:end], state, nesting + 1)
                value = self.lookup(reference.group(1), name, state)
                out.append(value)
                length += len(value)
                index = end + 1
                continue
            out.append(char)
            length += 1
            index += 1
        return self.bounded("".join(out))

    def lookup(self, space: str | None, name: str, state: _State) -> str:
        table = state.env if space == "ENV" else state.variables
        if name in table:
            value = table[name]
            if value is None:
                raise _UnknownValue(name)
            return value
        if space != "ENV" and self.detected(name, state):
            raise _UnknownValue(name)
        return ""

    def detected(self, name: str, state: _State) -> bool:
        return name not in self.protected and (
            name.startswith(_CONFIGURE_DETECTED) or any(name.startswith(p) for p in state.unknown_prefixes)
        )

    # -------------------------------------------------------------- conditions

    def condition(self, command: Command, state: _State, frame: _Frame) -> bool | None:
        tokens: list[_Token] = []
        for argument in command.arguments:
            if argument.kind == "paren":
                tokens.append(_Token(text=argument.text, quoted=False, paren=True))
                continue
            if argument.kind == "bracket":
                tokens.append(_Token(text=argument.text, quoted=True))
                continue
            try:
                parts = self.expand(argument.text, state, split=argument.kind == "unquoted")
            except _UnknownValue:
                tokens.append(_Token(text=None, quoted=argument.kind == "quoted"))
                continue
            if argument.kind == "quoted":
                tokens.append(_Token(text=parts[0], quoted=True))
            else:
                tokens.extend(_Token(text=p, quoted=False) for p in parts or [""])
        parser = _Condition(tokens, self, state)
        try:
            value = parser.parse()
        except CMakeError as exc:
            raise CMakeError(f"{frame.path}:{command.line}: {exc}") from None
        return value

    def path_test(self, operator: str, path: str) -> bool | None:
        if operator == "IS_ABSOLUTE":
            return path.startswith("/")
        normal = posixpath.normpath(path) if path else path
        if normal == BINARY_ROOT or normal.startswith(BINARY_ROOT + "/"):
            return False  # a clean build directory
        relative = _in_tree(normal)
        if relative is None:
            return None  # somewhere on the build machine
        if relative.startswith(".deps/") or relative == ".deps":
            return False  # FetchContent's download folder, empty in a clean tree
        if operator == "IS_DIRECTORY":
            return relative in self.directories
        return relative in self.paths or relative in self.directories


@dataclass(frozen=True, kw_only=True, slots=True)
class _Token:
    text: str | None  # None: unknown value
    quoted: bool
    paren: bool = False


_UNARY = frozenset({"EXISTS", "COMMAND", "DEFINED", "POLICY", "TARGET", "TEST", "IS_DIRECTORY", "IS_SYMLINK",
                    "IS_ABSOLUTE", "IS_READABLE", "IS_WRITABLE", "IS_EXECUTABLE"})
_BINARY = frozenset({"EQUAL", "LESS", "GREATER", "LESS_EQUAL", "GREATER_EQUAL", "STREQUAL", "STRLESS",
                     "STRGREATER", "STRLESS_EQUAL", "STRGREATER_EQUAL", "VERSION_EQUAL", "VERSION_LESS",
                     "VERSION_GREATER", "VERSION_LESS_EQUAL", "VERSION_GREATER_EQUAL", "MATCHES", "IN_LIST",
                     "PATH_EQUAL"})


class _Condition:
    """if() arguments, by CMake's precedence: parentheses, unary tests, binary tests, NOT, then
    AND and OR from left to right. Three-valued: None is unknown."""

    def __init__(self, tokens: list[_Token], evaluator: _Evaluator, state: _State) -> None:
        self.tokens = tokens
        self.index = 0
        self.evaluator = evaluator
        self.state = state
        self.nesting = 0

    def parse(self) -> bool | None:
        if not self.tokens:
            return False
        value = self.logical()
        if self.index != len(self.tokens):
            raise CMakeError(f"cannot parse the condition near {self.tokens[self.index].text!r}")
        return value

    def peek(self, *words: str) -> bool:
        if self.index >= len(self.tokens):
            return False
        token = self.tokens[self.index]
        if token.paren:
            return token.text in words
        return not token.quoted and token.text in words

    def take(self) -> _Token:
        if self.index >= len(self.tokens):
            raise CMakeError("the condition ends too early")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def logical(self) -> bool | None:
        value = self.negation()
        while self.peek("AND", "OR"):
            operator = self.take().text
            right = self.negation()
            value = _and(value, right) if operator == "AND" else _or(value, right)
        return value

    def negation(self) -> bool | None:
        negated = False
        while self.peek("NOT"):  # counted, not recursed: NOT NOT ... has no depth limit
            self.take()
            negated = not negated
        value = self.comparison()
        return None if value is None else value != negated

    def comparison(self) -> bool | None:
        if self.peek("("):
            self.take()
            self.nesting += 1
            if self.nesting > MAX_NESTING:
                raise CMakeError(f"parentheses nested deeper than {MAX_NESTING} in the condition")
            value = self.logical()
            if not self.peek(")"):
                raise CMakeError("unbalanced parentheses in the condition")
            self.take()
            self.nesting -= 1
            return value
        if self.peek(*_UNARY):
            operator = self.take().text
            assert operator is not None
            return self.unary(operator, self.take())
        left = self.take()
        if self.peek(*_BINARY):
            operator = self.take().text
            assert operator is not None
            return self.binary(operator, left, self.take())
        return self.truth(left)

    def truth(self, token: _Token) -> bool | None:
        if token.text is None:
            return None
        constant = _truth_constant(token.text)
        if constant is not None or token.quoted:
            return bool(constant)
        value = self.variable(token.text)
        if value is _UNDEFINED:
            return False
        if value is None:
            return None
        assert isinstance(value, str)
        return not _is_false_constant(value)

    def variable(self, name: str) -> str | None | object:
        variables = self.state.variables
        if name in variables:
            return variables[name]
        if self.evaluator.detected(name, self.state):
            return None
        return _UNDEFINED

    def operand(self, token: _Token) -> str | None:
        if token.text is None:
            return None
        if token.quoted:
            return token.text
        value = self.variable(token.text)
        if value is _UNDEFINED:
            return token.text
        return value if isinstance(value, str) or value is None else token.text

    def unary(self, operator: str, token: _Token) -> bool | None:
        if token.text is None:
            return None
        if operator == "DEFINED":
            env = re.fullmatch(r"ENV\{(.*)\}", token.text)
            if env:
                if env.group(1) not in self.state.env:
                    return False
                return None if self.state.env[env.group(1)] is None else True
            name = re.sub(r"^CACHE\{(.*)\}$", r"\1", token.text)
            value = self.variable(name)
            return False if value is _UNDEFINED else (None if value is None else True)
        if operator == "COMMAND" and token.text.lower() in self.evaluator.functions:
            return True
        if operator in ("EXISTS", "IS_DIRECTORY", "IS_ABSOLUTE"):
            return self.evaluator.path_test(operator, token.text)
        return None

    def binary(self, operator: str, left_token: _Token, right_token: _Token) -> bool | None:
        left = self.operand(left_token)
        if operator == "IN_LIST":
            listed = None if right_token.text is None else self.variable(right_token.text)
            if left is None or listed is None:
                return None
            return left in (listed.split(";") if isinstance(listed, str) else [])
        right = right_token.text if operator == "MATCHES" else self.operand(right_token)
        if left is None or right is None:
            return None
        if operator == "MATCHES":
            return self.evaluator.matches(right, left)
        if operator.startswith("VERSION_"):
            return _compare(operator.removeprefix("VERSION_"), _version(left), _version(right))
        if operator.startswith("STR"):
            return _compare(operator.removeprefix("STR"), left, right)
        if operator == "PATH_EQUAL":
            return posixpath.normpath(left) == posixpath.normpath(right)
        if not (_NUMBER.match(left.strip()) and _NUMBER.match(right.strip())):
            return False
        return _compare(operator, float(left), float(right))


_UNDEFINED = object()


def _compare(operator: str, left: Any, right: Any) -> bool:
    ordered = {"EQUAL": left == right, "LESS": left < right, "GREATER": left > right,
               "LESS_EQUAL": left <= right, "GREATER_EQUAL": left >= right}
    return bool(ordered[operator])


def _version(text: str) -> tuple[tuple[int, str], ...]:
    """Components compared as numbers of any length (int() refuses more than 4300 digits):
    (digit count, digits) without leading zeros orders as the numbers do."""
    parts = []
    for component in text.strip().split("."):
        digits = re.match(r"\d+", component)
        number = digits.group().lstrip("0") if digits else ""
        parts.append((len(number), number))
    while len(parts) < 4:
        parts.append((0, ""))
    return tuple(parts)


def _and(left: bool | None, right: bool | None) -> bool | None:
    if left is False or right is False:
        return False
    return None if left is None or right is None else True


def _or(left: bool | None, right: bool | None) -> bool | None:
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


# ---------------------------------------------------------------------------------- helpers


def _walk(nodes: Sequence[_Node]) -> Iterator[Command]:
    for node in nodes:
        if isinstance(node, Command):
            yield node
        elif isinstance(node, _If):
            for condition, body in node.branches:
                if condition is not None:
                    yield condition
                yield from _walk(body)
        else:
            yield node.header
            yield from _walk(node.body)


def _has_options(command: Command) -> bool:
    return len(command.arguments) > 1


def _single(options: Mapping[str, list[_Value]], key: str, name: str, where: str) -> str:
    values = options[key]
    if len(values) != 1 or values[0] is None or not values[0]:
        shown = "nothing" if not values else "a value it cannot know" if None in values else " ".join(map(str, values))
        raise CMakeError(f"{where}: cannot read the {key} of {name} ({shown})")
    return values[0]


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    index = start
    while index < len(text):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    return -1


def _in_tree(path: str) -> str | None:
    normal = posixpath.normpath(path)
    if normal.startswith(SOURCE_ROOT + "/"):
        return normal[len(SOURCE_ROOT) + 1:]
    return None


def _source_dir_variables(commands: Sequence[Command]) -> dict[str, str]:
    """name -> the variable a local-tree declaration (SOURCE_DIR, nothing to download) takes its
    directory from (`${VAR}` or `$ENV{VAR}`), over every declaration in the file, taken or not:
    a clean build takes the other branch."""
    found: dict[str, str] = {}
    for command in commands:
        if command.name not in _PIN_COMMANDS or not command.arguments:
            continue
        arguments = command.arguments
        if any(a.kind == "unquoted" and a.text in ("GIT_REPOSITORY", "URL") for a in arguments):
            continue  # a download's SOURCE_DIR is where it goes, not a local tree to use instead
        for keyword, value in zip(arguments, arguments[1:], strict=False):
            if keyword.kind == "unquoted" and keyword.text == "SOURCE_DIR":
                variable = re.fullmatch(r"\$(?:ENV)?\{([A-Za-z_][A-Za-z0-9_]*)\}", value.text)
                if variable:
                    found.setdefault(arguments[0].text.lower(), variable.group(1))
    return found
