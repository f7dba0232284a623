"""The vllm-lock command line: the typer app, the one error handler, `main`.

The commands live in cli/lock.py, cli/install.py and cli/lifecycle.py (plain functions: parse,
call one action, print) and are registered here, each wrapped in the handler. The error contract
(docs/error-contract.md): on any error stderr gets exactly one line starting with `error: `, then
only indented context lines (a build's log tail, the full log's path), and the process exits with
the code errors.exit_code_for() gives. Tracebacks only with VLLM_LOCK_DEBUG=1."""

from __future__ import annotations

import functools
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

import vllm_lock
from vllm_lock.cli import bundle as bundle_commands
from vllm_lock.cli import cache as cache_commands
from vllm_lock.cli import install as install_commands
from vllm_lock.cli import lifecycle as lifecycle_commands
from vllm_lock.cli import lock as lock_commands
from vllm_lock.errors import ExitCode, VllmLockError, exit_code_for
from vllm_lock.shell import git_environment

CONTEXT_INDENT = "  "


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


def handled(name: str, command: Callable[..., Any]) -> Callable[..., Any]:
    """The command with the one error handler around it: a failure is reported by the contract and
    exits with errors.exit_code_for(failure, command=name); an int result is the exit code."""

    @functools.wraps(command)
    def run_command(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
        except VllmLockError as exc:
            if os.environ.get("VLLM_LOCK_DEBUG"):
                raise
            report_error(str(exc))
            raise typer.Exit(exit_code_for(exc, command=name)) from None
        except KeyboardInterrupt as exc:
            report_error("interrupted")
            raise typer.Exit(exit_code_for(exc, command=name)) from None
        except Exception as exc:
            if isinstance(exc, BrokenPipeError) and stdout_closed():
                _silence_stdout()
                raise typer.Exit(ExitCode.STDOUT_CLOSED) from None
            if os.environ.get("VLLM_LOCK_DEBUG") or _is_click_exception(exc):
                raise
            report_error(internal_error_text(exc))
            raise typer.Exit(exit_code_for(exc, command=name)) from None
        if isinstance(result, int) and result:
            raise typer.Exit(result)
        return result

    return run_command


COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("resolve", lock_commands.resolve),
    ("show", lock_commands.show),
    ("export", lock_commands.export),
    ("demo", lifecycle_commands.demo),
    ("install", install_commands.install),
    ("verify", install_commands.verify),
    ("rollback", install_commands.rollback),
    ("build-check", install_commands.build_check),
    ("update", lock_commands.update),
    ("diff", lock_commands.diff),
    ("test", lifecycle_commands.test),
    ("promote", lifecycle_commands.promote),
    ("verify-lock", lock_commands.verify_lock),
    ("bundle", bundle_commands.bundle),
)
# Commands with sub-commands: (group, help, ((name, command), ...)).
GROUPS: tuple[tuple[str, str, tuple[tuple[str, Callable[..., Any]], ...]], ...] = (
    ("key", cache_commands.KEY_HELP, (("generate", cache_commands.key_generate),)),
    ("cache", cache_commands.CACHE_HELP, (
        ("push", cache_commands.cache_push), ("ls", cache_commands.cache_ls), ("verify", cache_commands.cache_verify),
        ("keys", cache_commands.cache_keys), ("name", cache_commands.cache_name),
        ("fetch", cache_commands.cache_fetch), ("has", cache_commands.cache_has),
        ("entry", cache_commands.cache_entry_show), ("publish", cache_commands.cache_publish),
    )),
    ("store", bundle_commands.STORE_HELP, (("gc", bundle_commands.store_gc),)),
)


def _print_version(requested: bool) -> None:
    if not requested:
        return
    from vllm_lock.shell import uv as uv_shell

    print(f"vllm-lock {vllm_lock.__version__}")
    print(f"uv {uv_shell.uv_version()}")
    raise typer.Exit()


def _options(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="print the versions of vllm-lock and of the uv it runs, then exit")] = False,
) -> None:
    pass


def typer_app(
    commands: tuple[tuple[str, Callable[..., Any]], ...] = COMMANDS,
    groups: tuple[tuple[str, str, tuple[tuple[str, Callable[..., Any]], ...]], ...] = GROUPS,
) -> typer.Typer:
    """The app with these commands and groups, each command wrapped in the one handler."""
    built = typer.Typer(
        name="vllm-lock",
        help="Reproducible, hashed locks for building vLLM from source.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    built.callback()(_options)
    for name, command in commands:
        built.command(name)(handled(name, command))
    for group, help_text, members in groups:
        sub = typer.Typer(help=help_text, no_args_is_help=True)
        for name, command in members:
            sub.command(name)(handled(f"{group} {name}", command))
        built.add_typer(sub, name=group)
    return built


app = typer_app()


def app_for(args: list[str]) -> typer.Typer:
    """The app for a command line: only the command it runs, when it names one (typer builds the
    parser of every command an app holds on each call, ~10 ms of every run for the twelve that do
    not run); none for --version; the whole app for the top-level help and an unknown command."""
    name = next((arg for arg in args if not arg.startswith("-")), None)
    chosen = tuple((n, command) for n, command in COMMANDS if n == name)
    group = tuple(g for g in GROUPS if g[0] == name)
    if chosen or group or (name is None and "--version" in args and "--help" not in args):
        return typer_app(chosen, group)
    return app


def _is_click_exception(exc: BaseException) -> bool:
    """typer.Exit / click's usage errors: the parser's, handled by main() (vendored click or not)."""
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


def _exit(code: int) -> NoReturn:
    """sys.exit after flushing stdout here, where a closed one exits quietly with 141 (one closed
    before we started, `>&-`, is None: what was printed went nowhere, as the caller chose)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(ExitCode.STDOUT_CLOSED)
    sys.exit(code)


def _interrupted(signum: int, frame: object) -> None:
    from vllm_lock.shell import proc

    proc.kill_own_sessions()  # git in a session of its own: the signal did not reach it
    raise KeyboardInterrupt


def main() -> NoReturn:
    """The app as the console script runs it. Command-line errors (unknown option, missing or bad
    argument: click's UsageError, vendored by typer or not) follow the same contract, exit 2; a
    bare `vllm-lock` prints the help. A closed stdout (the reader of a pipe went away) ends the
    command quietly with 141, as a shell reports a writer killed by SIGPIPE."""
    git_environment.forget_callers_repository()
    # every tool runs in a session of its own (killed with it at its deadline), out of reach of a
    # signal sent to ours: Ctrl-C, a SIGTERM (a job cancelled) or a SIGHUP (a terminal closed) kills
    # every tool of this process, a helper thread's too, then interrupts the main thread, so that
    # every interrupted step cleans up and none waits on a tool; one ignored by whoever started us
    # (nohup, a background job's SIGINT) stays ignored
    for ending in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(ending) is not signal.SIG_IGN:
            signal.signal(ending, _interrupted)
    try:
        code = app_for(sys.argv[1:])(standalone_mode=False)
    except typer.Abort:
        report_error("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and stdout_closed():
            _silence_stdout()
            sys.exit(ExitCode.STDOUT_CLOSED)
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
