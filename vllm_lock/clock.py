"""The one UTC clock that locks, promotions and test receipts are stamped with.

SOURCE_DATE_EPOCH (reproducible-builds.org), when set, is the time: a lock resolved twice from
the same inputs is then the same file."""

from __future__ import annotations

import datetime as dt
import os

from vllm_lock.errors import UsageError


def utc_timestamp() -> str:
    """Now (or SOURCE_DATE_EPOCH) in UTC, to the second: 2026-11-28T12:00:00Z."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        moment = dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a time in whole seconds since 1970") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
