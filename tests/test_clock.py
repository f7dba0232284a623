"""The one UTC clock (vllm_lock.clock) and the stamps that use it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from vllm_lock import clock
from vllm_lock.errors import ExitCode, UsageError


def test_source_date_epoch_is_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1900000000")
    assert clock.utc_timestamp() == "2030-03-17T17:46:40Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert clock.utc_timestamp() == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("value", [None, ""])
def test_without_source_date_epoch_it_is_now_in_utc(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = clock.utc_timestamp()
    after = dt.datetime.now(dt.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert before <= dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) <= after


@pytest.mark.parametrize("value", ["yesterday", "1.5", "99999999999999999999"])
def test_a_malformed_source_date_epoch_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    expected = rf"^SOURCE_DATE_EPOCH='{re.escape(value)}' is not a time in whole seconds"
    with pytest.raises(UsageError, match=expected) as err:
        clock.utc_timestamp()
    assert err.value.exit_code == ExitCode.USAGE


def test_promote_stamps_the_promotion_with_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sample_lock import make_lock

    from vllm_lock import codec
    from vllm_lock.actions import promote
    from vllm_lock.shell import files, lockfiles

    locks = tmp_path / "locks"
    locks.mkdir()
    monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(locks))
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1900000000")
    files.write_output(locks / "dev.lock.toml", codec.dumps(make_lock()))
    promote.promote("dev", force=True)
    stable, _ = lockfiles.read("stable")
    assert stable.provenance.promotion is not None
    assert stable.provenance.promotion.promoted_at == "2030-03-17T17:46:40Z"
