"""The one retry policy of http.py and s3.py (http._retried): at most 3 tries, pauses of 0.3 s then
0.6 s, final errors at once, and no try that the deadline could not wait for (no burst of tries
just before it). The policy's tests record the pauses instead of sleeping; the last two count
what a real loopback server saw, through each client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faults.faultservers import FaultHTTPServer

from vllm_lock.errors import CacheUnreachableError, UnreachableError
from vllm_lock.shell import http, limits, s3


class _Tries:
    """An attempt that fails (passing) `failures` times, then returns "page"; it counts its calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise http._Passing(f"HTTP 50{self.calls}")
        return "page"


@pytest.fixture()
def long_guard() -> Iterator[http._Deadline]:
    with http._deadline(60) as guard:
        yield guard


def test_a_passing_failure_then_a_success_returns_after_one_pause(long_guard: http._Deadline) -> None:
    attempt, pauses = _Tries(failures=1), list[float]()
    assert http._retried(attempt, long_guard, pause=pauses.append) == "page"
    assert attempt.calls == 2 and pauses == [0.3]


def test_failures_that_never_pass_are_given_up_after_three_tries(long_guard: http._Deadline) -> None:
    attempt, pauses = _Tries(failures=99), list[float]()
    with pytest.raises(http._Spent) as spent:
        http._retried(attempt, long_guard, pause=pauses.append)
    assert attempt.calls == 3 and pauses == [0.3, 0.6]
    assert (spent.value.last, spent.value.tries, spent.value.tries_text) == ("HTTP 503", 3, "3 tries")


def test_a_final_error_is_raised_at_the_first_try_without_a_pause(long_guard: http._Deadline) -> None:
    calls, pauses = list[str](), list[float]()

    def refused() -> str:
        calls.append("try")
        raise UnreachableError("HTTP 403 Forbidden")

    with pytest.raises(UnreachableError, match="^HTTP 403 Forbidden$"):
        http._retried(refused, long_guard, pause=pauses.append)
    assert calls == ["try"] and pauses == []


def test_no_try_follows_a_pause_that_the_deadline_cannot_hold() -> None:
    """0.2 s left, the next pause 0.3 s: the old loop skipped the pause and sent the next tries at once."""
    attempt, pauses = _Tries(failures=99), list[float]()
    with http._deadline(0.2) as guard, pytest.raises(http._Spent) as spent:
        http._retried(attempt, guard, pause=pauses.append)
    assert attempt.calls == 1 and pauses == []
    assert (spent.value.last, spent.value.tries_text) == ("HTTP 501", "1 try")


def test_no_try_starts_once_the_deadline_has_passed(long_guard: http._Deadline) -> None:
    attempt, pauses = _Tries(failures=0), list[float]()
    long_guard.expired.set()
    with pytest.raises(http._Spent) as spent:
        http._retried(attempt, long_guard, pause=pauses.append)
    assert attempt.calls == 0 and pauses == [] and spent.value.tries == 0


@pytest.fixture()
def answers_500() -> Iterator[FaultHTTPServer]:
    server = FaultHTTPServer(upstream="http://127.0.0.1:9")  # every path is faulty: nothing is proxied
    server.faults["*"] = "status:500"
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(("deadline", "requests", "tries"), [
    ("60", 3, "3 tries"),  # both pauses fit
    ("0.75", 2, "2 tries"),  # 0.3 s fits, then 0.6 s would not: the old loop sent a third at once
    ("0.29", 1, "1 try"),  # not even 0.3 s fits
])
def test_an_index_answering_500_is_tried_only_while_the_deadline_can_hold_the_pause(
    answers_500: FaultHTTPServer, monkeypatch: pytest.MonkeyPatch, deadline: str, requests: int, tries: str
) -> None:
    monkeypatch.setenv("VLLM_LOCK_HTTP_DEADLINE", deadline)
    url = answers_500.base_url + "/simple/torch/"
    with pytest.raises(UnreachableError) as refused:
        http.get_text(url)
    assert str(refused.value) == f"{url} unreachable after {tries}: HTTP 500"
    assert answers_500.faulty_requests == ["/simple/torch/"] * requests


@pytest.mark.parametrize(("deadline", "requests", "tries"), [(60.0, 3, "3 tries"), (0.29, 1, "1 try")])
def test_an_s3_endpoint_answering_500_is_tried_by_the_same_policy(
    answers_500: FaultHTTPServer, deadline: float, requests: int, tries: str
) -> None:
    location = s3.parse_url(f"s3://cache/p?endpoint={answers_500.base_url}", {})
    client = s3.Client(location, s3.Credentials(access_key="AKIDEXAMPLE", secret_key="not-a-real-secret"))
    with pytest.raises(CacheUnreachableError) as refused:
        client.get("x.entry", limit=1024, deadline=deadline)
    assert str(refused.value) == f"s3://cache/p/x.entry: GET answered HTTP 500 (after {tries})"
    assert answers_500.faulty_requests == ["/cache/p/x.entry"] * requests


@pytest.mark.parametrize(("attempt", "tries", "remaining", "first", "pause"), [
    (0, 3, 60.0, 0.3, 0.3), (1, 3, 60.0, 0.3, 0.6), (2, 3, 60.0, 0.3, None),  # the last try made
    (0, 3, 0.3, 0.3, None), (1, 3, 0.59, 0.3, None),  # the deadline cannot hold the pause
    (0, 3, 60.0, 0.5, 0.5), (1, 3, 60.0, 0.5, 1.0), (0, 1, 60.0, 0.5, None),  # git's pauses; a local call
])
def test_retry_pause_is_the_one_rule_http_s3_and_git_follow(attempt: int, tries: int, remaining: float, first: float,
                                                              pause: float | None) -> None:
    assert limits.retry_pause(attempt, tries, remaining, first) == pause
