"""The typer app and the single error handler: a VllmLockError becomes `error: <one line>`
on stderr and its exit code (errors.ExitCode). Tracebacks only with VLLM_LOCK_DEBUG=1."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from vllm_lock.errors import VllmLockError

app = typer.Typer(
    name="vllm-lock",
    help="Reproducible, hashed locks for building vLLM from source.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """app.command() with the error handler wrapped around the command body."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                result = fn(*a, **kw)
            except VllmLockError as exc:
                if os.environ.get("VLLM_LOCK_DEBUG"):
                    raise
                print(f"error: {exc}", file=sys.stderr, flush=True)
                raise typer.Exit(int(exc.exit_code)) from None
            except KeyboardInterrupt:
                print("error: interrupted", file=sys.stderr)
                raise typer.Exit(130) from None
            if isinstance(result, int) and result:
                raise typer.Exit(result)
            return result

        app.command(*args, **kwargs)(wrapper)
        return fn

    return decorate
