"""PatientStore: the engine's store rides out an outage within its budget, counted from when the store
stopped answering; past it, the error comes through. No sleeps: time is a fake clock."""

from __future__ import annotations

import pytest

from orchestrator.engine.rollout.outage import PatientStore
from orchestrator.errors import StoreUnavailable


class Flaky:
    """A store whose calls fail while ``down`` is set; each failed call moves the clock."""

    def __init__(self) -> None:
        self.down = 0  # how many more calls fail
        self.calls = 0
        self.url = "sqlite:///x"

    def rollout(self, rollout_id: str) -> str:
        self.calls += 1
        if self.down:
            self.down -= 1
            raise StoreUnavailable("ORCH_DATABASE_URL: the store does not answer: connection refused")
        return f"rollout {rollout_id}"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def patient(budget: float = 60.0) -> tuple[PatientStore, Flaky, Clock]:
    store, clock = Flaky(), Clock()
    return PatientStore(store, budget=budget, sleep=clock.sleep, clock=clock), store, clock


def test_a_short_outage_is_waited_out_and_counted() -> None:
    wrapped, store, clock = patient()
    store.down = 5
    assert wrapped.rollout("R1") == "rollout R1"
    assert store.calls == 6 and wrapped.outages == 1 and 0 < wrapped.last_outage == clock.now < 60
    assert wrapped.url == "sqlite:///x"  # attributes pass through


def test_past_the_budget_the_error_comes_through() -> None:
    wrapped, store, clock = patient(budget=10.0)
    store.down = 10**6
    with pytest.raises(StoreUnavailable, match="does not answer"):
        wrapped.rollout("R1")
    assert 10.0 < clock.now <= 16.0  # the budget, plus at most one backoff step (5 s)
    assert wrapped.down_for > 10.0 and wrapped.outages == 0


def test_the_budget_counts_from_the_outage_not_per_call() -> None:
    wrapped, store, clock = patient(budget=10.0)
    store.down = 10**6
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            wrapped.rollout("R1")
    assert clock.now <= 21.0  # later calls gave up at once or after one backoff, not after 10 s each
    store.down = 0
    assert wrapped.rollout("R1") == "rollout R1"
    assert wrapped.outages == 1 and wrapped.down_for == 0.0


def test_every_outage_is_reported_once_per_rollout() -> None:
    wrapped, store, _clock = patient(budget=10.0)
    store.down = 10**6
    with pytest.raises(StoreUnavailable):
        wrapped.rollout("R1")
    store.down = 0
    wrapped.rollout("R1")
    lasted = wrapped.outage_to_report("R1")
    assert lasted is not None and lasted > 10.0
    assert wrapped.outage_to_report("R1") is None  # said once
    assert wrapped.outage_to_report("R2") == lasted  # each rollout records it
    short, store2, _ = patient(budget=60.0)
    store2.down = 2
    short.rollout("R1")
    within = short.outage_to_report("R1")  # within the budget: recorded all the same (no pause)
    assert within is not None and within <= 60.0
    assert short.outage_to_report("R1") is None
    fresh, _store3, _ = patient(budget=60.0)
    fresh.rollout("R1")
    assert fresh.outage_to_report("R1") is None  # no outage, nothing to record


class FullDisk:
    """Reads answer, writes fail: a SQLite store on a full disk."""

    def __init__(self) -> None:
        self.full = True

    def steps(self, rollout_id: str) -> list[str]:
        return []

    def save_host(self, rollout_id: str) -> None:
        if self.full:
            raise StoreUnavailable("ORCH_DATABASE_URL: the disk under the store is full; free space there")


def test_reads_answering_do_not_end_an_outage_only_the_failed_call_succeeding_does() -> None:
    store, clock = FullDisk(), Clock()
    wrapped = PatientStore(store, budget=10.0, sleep=clock.sleep, clock=clock)
    with pytest.raises(StoreUnavailable, match="full"):
        wrapped.save_host("R1")  # past the budget
    assert wrapped.steps("R1") == []  # a read answers...
    assert wrapped.down_for > 10.0 and wrapped.outages == 0  # ...and the outage goes on
    store.full = False
    wrapped.save_host("R1")
    assert wrapped.down_for == 0.0 and wrapped.outages == 1 and wrapped.last_outage > 10.0


def test_each_tick_says_once_per_outage_that_it_went_past_the_budget() -> None:
    wrapped, store, _clock = patient(budget=10.0)
    store.down = 10**6
    with pytest.raises(StoreUnavailable):
        wrapped.rollout("R1")
    assert [wrapped.first_overrun("R1/web1") for _ in range(3)] == [True, False, False]
    assert wrapped.first_overrun("R1/web2")
    store.down = 0
    wrapped.rollout("R1")  # the outage ends: the next one is said again
    assert wrapped.first_overrun("R1/web1")
