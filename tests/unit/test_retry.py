"""The one retry policy: transient errors are retried with backoff through an injected sleep."""

from __future__ import annotations

import logging

import pytest

from orchestrator.errors import (
    CommandTimeout,
    HypervisorError,
    LoadBalancerError,
    OrchestratorError,
    RemoteError,
)
from orchestrator.retry import RetryPolicy


class Flaky:
    """Raises the given errors in order, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def refused() -> RemoteError:
    return RemoteError("connect to web1 (10.0.0.1:22): connection refused", host="web1", transient=True)


def policy(sleeps: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=sleeps.append)


def test_success_needs_no_retry() -> None:
    sleeps: list[float] = []
    fn = Flaky()
    assert policy(sleeps).call(fn) == "ok"
    assert (fn.calls, sleeps) == (1, [])


def test_transient_errors_are_retried_with_growing_bounded_waits() -> None:
    sleeps: list[float] = []
    fn = Flaky(refused(), refused(), refused())
    assert policy(sleeps).call(fn) == "ok"
    assert fn.calls == 4
    assert len(sleeps) == 3
    assert sleeps == sorted(sleeps) and sleeps[0] > 0 and sleeps[-1] <= 5.0


def test_transient_errors_give_up_after_the_attempts_with_the_last_error() -> None:
    sleeps: list[float] = []
    last = refused()
    fn = Flaky(refused(), refused(), last, refused())
    with pytest.raises(RemoteError) as raised:
        policy(sleeps, attempts=3).call(fn)
    assert raised.value is last
    assert fn.calls == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "error",
    [
        LoadBalancerError("backend app has no server web9"),
        HypervisorError("domain web1-vm has no snapshot orch-1", domain="web1-vm", snapshot="orch-1"),
        CommandTimeout("install on web1 outlived its 60s timeout", host="web1"),  # may have half-run
        RemoteError("channel closed by web1", host="web1"),
        OrchestratorError("anything else"),
        ValueError("a bug is not retried either"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_transient_errors_fail_at_once(error: Exception) -> None:
    sleeps: list[float] = []
    fn = Flaky(error)
    with pytest.raises(type(error)) as raised:
        policy(sleeps).call(fn)
    assert raised.value is error
    assert (fn.calls, sleeps) == (1, [])


def test_on_retry_hook_sees_each_error_and_attempt() -> None:
    seen: list[tuple[str, int]] = []
    first, second = refused(), LoadBalancerError("reset by peer", transient=True)
    retry = RetryPolicy(sleep=lambda _: None, on_retry=lambda exc, n: seen.append((str(exc), n)))
    assert retry.call(Flaky(first, second)) == "ok"
    assert seen == [(str(first), 1), (str(second), 2)]


def test_transient_then_permanent_stops_at_the_permanent_one() -> None:
    sleeps: list[float] = []
    permanent = LoadBalancerError("unknown backend app")
    fn = Flaky(refused(), permanent)
    with pytest.raises(LoadBalancerError) as raised:
        policy(sleeps).call(fn)
    assert raised.value is permanent
    assert (fn.calls, len(sleeps)) == (2, 1)


def test_retries_are_logged_and_counted_by_default(caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.retry import RETRIES

    before = RETRIES.labels("LoadBalancerError")._value.get()
    calls = iter([LoadBalancerError("socket gone", transient=True), None])

    def flaky() -> str:
        error = next(calls)
        if error is not None:
            raise error
        return "ok"

    with caplog.at_level(logging.WARNING, logger="orchestrator.retry"):
        assert RetryPolicy(sleep=lambda _: None).call(flaky) == "ok"
    assert RETRIES.labels("LoadBalancerError")._value.get() == before + 1
    assert "retrying after attempt 1 failed with a transient error: socket gone" in caplog.text
