"""Python source from an untrusted tree (setup.py and what it loads), parsed within bounds. Pure.

ast.parse recurses in C and ast.unparse in Python: an expression thousands of operators deep
(`X = a+a+...`) ends in RecursionError in one or the other. The text's size is bounded before
parsing and the tree's depth, counted without recursion, right after.
"""

from __future__ import annotations

import ast

MAX_SOURCE_BYTES = 4 << 20  # vLLM 0.33.0's setup.py: 70 KB
MAX_AST_DEPTH = 100  # vLLM's setup.py nests 13 to 18 deep; ast.unparse copes with 300


class PythonSourceError(ValueError):
    """Source that cannot be read within the bounds: the message names the file (and line)."""


def parse(text: str, path: str) -> ast.Module:
    if len(text) > MAX_SOURCE_BYTES:
        raise PythonSourceError(f"{path}: larger than {MAX_SOURCE_BYTES} bytes")
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else path  # a null byte has no line
        raise PythonSourceError(f"{where}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise PythonSourceError(f"{path}: nested too deeply to parse") from None
    except ValueError as exc:  # a null byte, in Pythons before 3.11.4
        raise PythonSourceError(f"{path}: {exc}") from None
    pending: list[tuple[ast.AST, int, int]] = [(tree, 0, 1)]  # node, depth, the nearest line above
    while pending:
        node, depth, line = pending.pop()
        line = getattr(node, "lineno", line)
        if depth > MAX_AST_DEPTH:
            raise PythonSourceError(f"{path}:{line}: nested deeper than {MAX_AST_DEPTH}")
        pending.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    return tree
