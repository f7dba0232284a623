"""Counting compilers for the tests and benchmarks: CC/CXX wrappers that log each call to a file
before running the real gcc/g++, so a run can be checked for "zero compiler calls"."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path


def compiler_wrappers(where: Path) -> tuple[dict[str, str], Path]:
    """CC/CXX that log each call to a file before running the real compiler: (the variables, the log)."""
    where.mkdir(parents=True, exist_ok=True)
    calls = where / "compiler-calls.log"
    calls.touch()
    env = {}
    for variable, real in (("CC", "gcc"), ("CXX", "g++")):
        wrapper = where / f"counting-{real}"
        wrapper.write_text(f'#!/bin/sh\necho "{real} $*" >> "{calls}"\nexec {shutil.which(real)} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        env[variable] = str(wrapper)
    return env, calls


def compiler_calls(calls: Path) -> int:
    """Calls that compile or link (preflight's version probes, `-dumpversion`, are not counted)."""
    return sum("-dump" not in line and "--version" not in line for line in calls.read_text().splitlines())
