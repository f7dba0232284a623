"""Locks written before the restructuring read, verify, diff, export and show byte for byte as before."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from golden_cli import COMMANDS, run

from vllm_lock import codec

GOLDEN = Path(__file__).parent / "golden"
EXPECTED: dict[str, dict[str, object]] = json.loads((GOLDEN / "outputs.json").read_text())


def test_every_pinned_command_has_an_output() -> None:
    assert sorted(EXPECTED) == sorted(" ".join(c) for c in COMMANDS)


@pytest.mark.parametrize("name", ["before.lock.toml", "after.lock.toml"])
def test_old_locks_read_and_write_back_to_the_same_bytes(name: str) -> None:
    text = (GOLDEN / name).read_text()
    lock = codec.loads(text, origin=name)
    assert codec.dumps(lock) == text


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--help" not in c], ids=" ".join)
def test_output_is_unchanged(command: tuple[str, ...]) -> None:
    assert run(command, GOLDEN) == EXPECTED[" ".join(command)]


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--help" in c and c != ("--help",)], ids=" ".join)
def test_every_option_a_command_had_is_still_there(command: tuple[str, ...]) -> None:
    # Help wording may improve and options may be added (issues 10 and 11); none may go or change meaning.
    now, before = run(command, GOLDEN), EXPECTED[" ".join(command)]
    assert now["rc"] == before["rc"] == 0
    assert _options(str(before["stdout"])) <= _options(str(now["stdout"]))
    usage = re.compile(r"^ Usage: .*$", flags=re.M)
    assert usage.findall(str(now["stdout"])) == usage.findall(str(before["stdout"]))


def test_top_level_help_still_lists_every_command() -> None:
    # The top-level help may grow (new commands, --version); nothing it listed may go.
    now = str(run(("--help",), GOLDEN)["stdout"])
    listed = re.findall(r"^│ ([a-z][a-z-]+) ", str(EXPECTED["--help"]["stdout"]), flags=re.M)
    assert len(listed) >= 13
    for command in listed:
        assert re.search(rf"^│ {command} ", now, flags=re.M), command
