"""codec.same_but_time, the one "equal except the time" rule: resolve keeps a lock whose rerun only
moved `resolved-at`, promote keeps a stable lock whose promotion only moved `promoted-at`."""

from __future__ import annotations

import dataclasses

from sample_lock import C2, make_lock

from vllm_lock import codec
from vllm_lock.model import Lock, Promotion


def _resolved(lock: Lock, when: str) -> Lock:
    return dataclasses.replace(lock, provenance=dataclasses.replace(lock.provenance, resolved_at=when))


def _promoted(lock: Lock, when: str) -> Lock:
    promotion = Promotion(from_name="dev", from_content_hash=codec.content_hash(lock), promoted_at=when,
                          forced=False, test_receipts=())
    return dataclasses.replace(lock, provenance=dataclasses.replace(lock.provenance, promotion=promotion))


def test_only_the_named_time_may_differ() -> None:
    lock = make_lock()
    later = _resolved(lock, "2026-12-01T00:00:00Z")
    assert codec.same_but_time(lock, later, "resolved-at")
    assert not codec.same_but_time(lock, _resolved(make_lock(commit=C2), "2026-12-01T00:00:00Z"), "resolved-at")
    assert not codec.same_but_time(_promoted(lock, "2026-12-01T00:00:00Z"), _promoted(later, "2026-12-01T00:00:00Z"),
                                   "promoted-at")  # the other time is not ignored


def test_promoted_at_needs_a_promotion_on_both_sides() -> None:
    lock = make_lock()
    first, again = _promoted(lock, "2026-12-01T00:00:00Z"), _promoted(lock, "2026-12-02T00:00:00Z")
    assert codec.same_but_time(first, again, "promoted-at")
    assert not codec.same_but_time(lock, again, "promoted-at")
    assert not codec.same_but_time(lock, lock, "promoted-at")  # nothing was promoted: not "the same promotion"
    assert not codec.same_but_time(first, dataclasses.replace(again, name="other"), "promoted-at")
