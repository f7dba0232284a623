"""The `vllm-lock` console script: cli.main in a process of its own, without two costs that such a
process pays for nothing (measured on a substituted install: ~30 ms of its ~0.3 s).

- The cyclic garbage collector runs every 700 new objects, and importing ~60 modules makes tens of
  thousands that live to the end: it runs a few hundred times for nothing. It runs every 20,000
  here, and still collects whatever cycles a long command leaves.
- At exit the interpreter frees every module and object one by one (~20 ms). Once the outcome is
  flushed nothing is left to do: every file is closed by then, every child process waited for,
  every pool and beside-thread joined; the process ends at once with the exit code cli.main chose.

`python -m vllm_lock.cli` runs this too; `from vllm_lock.cli import main` (the tests' probes) keeps
the interpreter's own start and end."""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn

COLLECT_EVERY = 20_000  # new container objects between two collections of the youngest generation


def main() -> NoReturn:
    gc.set_threshold(COLLECT_EVERY, 20, 20)
    from vllm_lock import cli

    try:
        cli.main()
    except SystemExit as ended:
        code = exit_status(ended.code)
    os._exit(flushed(code))


def exit_status(code: object) -> int:
    """What the interpreter makes of sys.exit(code): None is 0, an int is itself, anything else is
    printed on stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    if sys.stderr is not None:  # print(file=None) would write it on stdout
        print(code, file=sys.stderr)
    return 1


def flushed(code: int) -> int:
    """code, once stdout and stderr are flushed; a stdout whose reader went away makes it 141, as
    cli.main reports one (ExitCode.STDOUT_CLOSED)."""
    from vllm_lock.errors import ExitCode

    try:
        if sys.stdout is not None:  # None: started with it closed (>&-), as cli.main reads it
            sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # ValueError: cli.main closed it after a broken pipe
        code = code or ExitCode.STDOUT_CLOSED
    if sys.stderr is not None:  # None: started with it closed (2>&-), which is no failure of ours
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # nobody left to tell
    return code
