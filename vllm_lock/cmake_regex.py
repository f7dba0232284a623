"""CMake's regular expressions (`if(X MATCHES regex)`), searched in time linear in the string: a
tree's CMake is untrusted, and a backtracking engine (Python's `re`) can be made to run for ever
by a pattern like `(a+)+$`, or for n**k steps by `a*a*...a*$`. CMake's dialect (Henry Spencer's:
`^ $ . [...] [^...] ( ) | * + ?` and `\\c` for a literal c) has no backreferences or lookarounds,
so a Thompson NFA run over the string in one pass decides it exactly; MATCHES only needs whether
there is a match, never where. Pure.

`^` and `$` anchor at the string's start and end only (CMake's; Python's `$` also matches before
a final newline). A pattern CMake would not compile is a RegexSyntaxError; the caller decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_PATTERN_LENGTH = 1_000  # characters of one pattern (vLLM's longest, every release: 45)
# CMake's own limit (its compiler: "Too many ()"), which also keeps the recursive descent shallow
# under an evaluator already deep in a hostile tree's nested blocks and conditions
MAX_GROUPS = 9
MAX_SUBJECT_LENGTH = 65_536  # characters of one string matched (vLLM's are flags and arch lists)


class RegexSyntaxError(ValueError):
    """A pattern CMake's regex compiler refuses (unbalanced parentheses, `a**`, ...)."""


@dataclass(frozen=True, slots=True)
class _Char:
    test: Callable[[str], bool]
    next: int


@dataclass(frozen=True, slots=True)
class _Split:
    first: int
    second: int


@dataclass(frozen=True, slots=True)
class _Assert:
    at_start: bool  # True: `^`, False: `$`
    next: int


_Op = _Char | _Split | _Assert | None  # None: the match state

_SPECIAL = frozenset("^$.[()|*+?\\")


class _Compiler:
    """Recursive descent over the pattern into a list of NFA states (the program); each fragment
    is (start, dangling slots to patch)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.program: list[list[Any]] = []  # mutable while compiling: [kind, *fields]
        self.groups = 0

    def emit(self, *fields: Any) -> int:
        self.program.append(list(fields))
        return len(self.program) - 1

    def patch(self, holes: list[tuple[int, int]], target: int) -> None:
        for state, slot in holes:
            self.program[state][slot] = target

    def alternation(self) -> tuple[int, list[tuple[int, int]]]:
        start, holes = self.concatenation()
        while self.pos < len(self.pattern) and self.pattern[self.pos] == "|":
            self.pos += 1
            other, other_holes = self.concatenation()
            start = self.emit("split", start, other)
            holes = holes + other_holes
        return start, holes

    def concatenation(self) -> tuple[int, list[tuple[int, int]]]:
        pieces: list[tuple[int, list[tuple[int, int]]]] = []
        while self.pos < len(self.pattern) and self.pattern[self.pos] not in "|)":
            pieces.append(self.piece())
        if not pieces:
            empty = self.emit("jump", -1)
            return empty, [(empty, 1)]
        start, holes = pieces[0]
        for next_start, next_holes in pieces[1:]:
            self.patch(holes, next_start)
            holes = next_holes
        return start, holes

    def piece(self) -> tuple[int, list[tuple[int, int]]]:
        start, holes, has_width = self.atom()
        if self.pos >= len(self.pattern) or self.pattern[self.pos] not in "*+?":
            return start, holes
        operator = self.pattern[self.pos]
        self.pos += 1
        if self.pos < len(self.pattern) and self.pattern[self.pos] in "*+?":
            raise RegexSyntaxError("nested *?+")
        if not has_width and operator != "?":
            raise RegexSyntaxError("*+ operand could be empty")
        split = self.emit("split", start, -1)
        if operator == "?":
            return split, [*holes, (split, 2)]
        self.patch(holes, split)
        return (split if operator == "*" else start), [(split, 2)]

    def atom(self) -> tuple[int, list[tuple[int, int]], bool]:
        if self.pos >= len(self.pattern):
            raise RegexSyntaxError("the pattern ends too early")
        char = self.pattern[self.pos]
        self.pos += 1
        if char in "*+?":
            raise RegexSyntaxError("?+* follows nothing")
        if char in "^$":
            state = self.emit("assert", char == "^", -1)
            return state, [(state, 2)], False
        if char == "(":
            self.groups += 1
            if self.groups > MAX_GROUPS:
                raise RegexSyntaxError(f"more than {MAX_GROUPS} () groups")
            start, holes = self.alternation()
            if self.pos >= len(self.pattern) or self.pattern[self.pos] != ")":
                raise RegexSyntaxError("unmatched ()")
            self.pos += 1
            return start, holes, self._width(start)
        if char == ")":
            raise RegexSyntaxError("unmatched ()")
        if char == ".":
            return self._char(lambda c: True)
        if char == "[":
            return self._char(self._bracket())
        if char == "\\":
            if self.pos >= len(self.pattern):
                raise RegexSyntaxError("trailing \\")
            char = self.pattern[self.pos]
            self.pos += 1
        return self._char(char.__eq__)

    def _char(self, test: Callable[[str], bool]) -> tuple[int, list[tuple[int, int]], bool]:
        state = self.emit("char", test, -1)
        return state, [(state, 2)], True

    def _bracket(self) -> Callable[[str], bool]:
        """CMake's class: a leading `]` or `-` is itself; a `-` before `]` is itself; any other
        `-` spans from the character before it, plus one, to the one after (so in `[a-c-e]` the
        second `-` adds d and e: it starts where the pattern's previous character left off)."""
        pattern = self.pattern
        negated = self.pos < len(pattern) and pattern[self.pos] == "^"
        self.pos += negated
        ranges: list[tuple[str, str]] = []
        if self.pos < len(pattern) and pattern[self.pos] in "]-":
            ranges.append((pattern[self.pos], pattern[self.pos]))
            self.pos += 1
        while self.pos < len(pattern) and pattern[self.pos] != "]":
            if pattern[self.pos] != "-":
                ranges.append((pattern[self.pos], pattern[self.pos]))
                self.pos += 1
                continue
            self.pos += 1
            if self.pos >= len(pattern) or pattern[self.pos] == "]":
                ranges.append(("-", "-"))
                continue
            low, high = ord(pattern[self.pos - 2]) + 1, ord(pattern[self.pos])
            if low > high + 1:
                raise RegexSyntaxError("invalid [] range")
            if low <= high:
                ranges.append((chr(low), chr(high)))
            self.pos += 1
        if self.pos >= len(pattern):
            raise RegexSyntaxError("unmatched []")
        self.pos += 1
        # one set lookup per character, however long the class (the pattern is bytes: <= 256)
        members = frozenset(chr(code) for low, high in ranges for code in range(ord(low), ord(high) + 1))
        return (lambda c: c not in members) if negated else members.__contains__

    def _width(self, start: int) -> bool:
        """Can the fragment from start (compiled so far, holes unpatched) consume nothing? False
        when some path reaches a dangling slot without a character."""
        seen: set[int] = set()
        stack = [start]
        while stack:
            state = stack.pop()
            if state < 0:
                return False
            if state in seen:
                continue
            seen.add(state)
            kind, *fields = self.program[state]
            if kind == "split":
                stack += [int(fields[0]), int(fields[1])]
            elif kind in ("jump", "assert"):
                stack.append(int(fields[-1]))
        return True


@dataclass(frozen=True, slots=True)
class Regex:
    program: tuple[_Op, ...]
    start: int


def _bytes(text: str) -> str:
    """The text's UTF-8 bytes, one character each: CMake matches bytes (`.` is one byte of `é`)."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def compile_pattern(pattern: str) -> Regex:
    """The pattern as a program, or RegexSyntaxError."""
    compiler = _Compiler(_bytes(pattern))
    start, holes = compiler.alternation()
    if compiler.pos != len(compiler.pattern):
        raise RegexSyntaxError("unmatched ()")
    match = compiler.emit("match")
    compiler.patch(holes, match)
    program: list[_Op] = []
    for kind, *fields in compiler.program:
        if kind == "char":
            program.append(_Char(test=fields[0], next=int(fields[1])))
        elif kind == "split":
            program.append(_Split(first=int(fields[0]), second=int(fields[1])))
        elif kind == "jump":
            target = int(fields[0])
            program.append(_Split(first=target, second=target))
        elif kind == "assert":
            program.append(_Assert(at_start=bool(fields[0]), next=int(fields[1])))
        else:
            program.append(None)
    return Regex(program=tuple(program), start=start)


def search(regex: Regex, subject: str, spend: Callable[[int], None]) -> bool:
    """Is there a match anywhere in subject? One pass: the set of NFA states alive after each
    character, a new thread started at every position. spend(n) is told the work done (states
    visited), so the caller can bound it over many searches."""
    program = regex.program
    subject = _bytes(subject)
    end = len(subject)

    def closure(states: list[int], position: int) -> tuple[list[int], bool]:
        alive: list[int] = []
        seen: set[int] = set()
        stack = list(reversed(states))
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            op = program[state]
            if op is None:
                spend(len(seen))
                return alive, True
            if isinstance(op, _Split):
                stack += [op.second, op.first]
            elif isinstance(op, _Assert):
                if (position == 0) if op.at_start else (position == end):
                    stack.append(op.next)
            else:
                alive.append(state)
        spend(len(seen))
        return alive, False

    current: list[int] = []
    for position in range(end + 1):
        current, matched = closure([*current, regex.start], position)
        if matched:
            return True
        if position == end:
            return False
        char = subject[position]
        stepped: list[int] = []
        for state in current:
            op = program[state]
            assert isinstance(op, _Char)
            if op.test(char):
                stepped.append(op.next)
        current = stepped
    return False
