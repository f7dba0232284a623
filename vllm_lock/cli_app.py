"""The typer app and the single error handler. The error contract (docs/error-contract.md): on
any error stderr gets exactly one line starting with `error: `, then only indented context lines
(a build's log tail, the full log's path), and the process exits with the code of errors.ExitCode.
Tracebacks only with VLLM_LOCK_DEBUG=1."""

from __future__ import annotations

import errno
import functools
import os
import select
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from vllm_lock.errors import ExitCode, VllmLockError

if TYPE_CHECKING:
    from rich.console import Console

    from vllm_lock.mirrors import Mirrors

app = typer.Typer(
    name="vllm-lock",
    help="Reproducible, hashed locks for building vLLM from source.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_INDENT = "  "
INTERRUPTED = 130


SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def printable(line: str) -> str:
    """The line with every non-printable character (ESC, other controls, tabs) escaped as \\xNN /
    \\uNNNN: messages carry untrusted text (lock fields, paths, GPU names, build output), and a
    terminal must never interpret it."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in line)


def error_text(message: str) -> str:
    """The contract's form of a message: its first non-empty line after `error: `, every other
    non-empty line indented (lines already indented keep their indentation); every character
    printable."""
    lines = [printable(line.rstrip()) for line in message.splitlines() if line.strip()]
    head = lines[0].strip() if lines else "unknown error"
    context = [line if line[:1].isspace() else CONTEXT_INDENT + line for line in lines[1:]]
    return "\n".join([f"error: {head}", *context])


def report_error(message: str) -> None:
    print(error_text(message), file=sys.stderr, flush=True)


def internal_error_text(exc: BaseException) -> str:
    """The last resort's message: an exception that no rule expected is a bug, reported in one
    line that names it (the traceback only with VLLM_LOCK_DEBUG=1)."""
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"internal error: {type(exc).__name__}: {message} (VLLM_LOCK_DEBUG=1 for the traceback)"


def command(*args: Any, any_error_exit: ExitCode | None = None, **kwargs: Any) -> Callable[[F], F]:
    """app.command() with the error handler wrapped around the command body. any_error_exit: the
    one code for every error of a command whose scripts read 0/1 as answers (verify, diff)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                result = fn(*a, **kw)
            except VllmLockError as exc:
                if os.environ.get("VLLM_LOCK_DEBUG"):
                    raise
                report_error(str(exc))
                raise typer.Exit(int(any_error_exit or exc.exit_code)) from None
            except KeyboardInterrupt:
                report_error("interrupted")
                raise typer.Exit(INTERRUPTED) from None
            except Exception as exc:
                if isinstance(exc, BrokenPipeError) and stdout_closed():
                    _silence_stdout()
                    raise typer.Exit(SIGPIPE_EXIT) from None
                if os.environ.get("VLLM_LOCK_DEBUG") or _is_click_exception(exc):
                    raise
                report_error(internal_error_text(exc))
                raise typer.Exit(int(any_error_exit or ExitCode.INTERNAL)) from None
            if isinstance(result, int) and result:
                raise typer.Exit(result)
            return result

        app.command(*args, **kwargs)(wrapper)
        return fn

    return decorate


def _is_click_exception(exc: BaseException) -> bool:
    """typer.Exit / click's usage errors: the parser's, handled by run() (vendored click or not)."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int) \
        or isinstance(exc, (typer.Exit, typer.Abort))


def stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader is gone (`| head`, `| true`): then a
    BrokenPipeError is the reader's choice, not a fault. Any other BrokenPipeError (a child's
    pipe) stays an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """stdout onto /dev/null, so the interpreter's last flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def stdout_console() -> Console:
    """A rich console on stdout whose closed pipe is a BrokenPipeError for the one handler (rich's
    own would exit 1 without a word)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "stdout closed")

    return _Console()


def _exit(code: int) -> NoReturn:
    """sys.exit after flushing stdout here, where a closed one exits quietly with 141."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(SIGPIPE_EXIT)
    sys.exit(code)


def run() -> NoReturn:
    """The app as the console script runs it. Command-line errors (unknown option, missing or bad
    argument: click's UsageError, vendored by typer or not) follow the same contract, exit 2; a
    bare `vllm-lock` prints the help. A closed stdout (the reader of a pipe went away) ends the
    command quietly with 141, as a shell reports a writer killed by SIGPIPE."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        report_error("interrupted")
        sys.exit(INTERRUPTED)
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and stdout_closed():
            _silence_stdout()
            sys.exit(SIGPIPE_EXIT)
        if not _is_click_exception(exc):
            if os.environ.get("VLLM_LOCK_DEBUG"):
                raise
            report_error(internal_error_text(exc))
            sys.exit(ExitCode.INTERNAL)
        format_message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if not callable(format_message) or not isinstance(exit_code, int):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help, as before
            exc.show()  # type: ignore[attr-defined]
            _exit(exit_code)
        report_error(str(format_message()))
        sys.exit(exit_code)
    _exit(code if isinstance(code, int) else ExitCode.OK)


def mirror_settings(options: list[str] | None) -> Mirrors:
    """The mirrors of `--mirror` options and $VLLM_LOCK_MIRRORS (a bad one: a usage error)."""
    from vllm_lock import mirrors

    return mirrors.parse(options or (), os.environ.get("VLLM_LOCK_MIRRORS"))
from vllm_lock import cli_bundle  # noqa: E402,F401  (bundle, store gc register on import)
