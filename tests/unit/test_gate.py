"""The gate before each drain, over a real SQLite store and a fake load balancer: which pauses hold a
host, which lift by themselves, and that the gate writes nothing but the capacity claim."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.engine.host.decisions import Hold, Proceed
from orchestrator.engine.rollout.gate import Gate
from orchestrator.model.playbook import WindowSpec
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.db import Store
from tests.unit.fakes import FakeLoadBalancer, rollout_spec, sqlite_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return sqlite_store(tmp_path)


def paused(store: Store, cause: PauseCause, spec_overrides: dict[str, object] | None = None) -> Store:
    store.create_rollout(rollout_spec(**(spec_overrides or {})))
    store.transition_rollout("R1", RolloutState.RUNNING)
    store.transition_rollout("R1", RolloutState.PAUSED, reason=f"paused: {cause.value}", cause=cause)
    return store


def test_a_hypervisor_pause_holds_while_it_is_silent_and_lets_go_when_it_answers(store: Store) -> None:
    spec = rollout_spec()
    paused(store, PauseCause.HYPERVISOR)
    answers: list[str | None] = ["libvirt did not answer within 300s"]
    gate = Gate(store, spec, FakeLoadBalancer(), hypervisor_down=lambda _h: answers[-1])
    host = spec.hosts["web1"]
    held = gate.gate(host, rollback=False)
    assert isinstance(held, Hold) and held.cause is PauseCause.HYPERVISOR and "did not answer" in held.reason
    assert store.host("R1", "web1").state is HostState.PENDING  # nothing claimed
    answers.append(None)
    assert isinstance(gate.gate(host, rollback=False), Proceed)
    assert store.host("R1", "web1").state is HostState.DRAINING  # the claim, and only it, was written
    rollout = store.rollout("R1")
    assert (
        rollout is not None and rollout.state is RolloutState.PAUSED
    )  # the coordinator lifts it, not the gate


@pytest.mark.parametrize("cause", [PauseCause.OPERATOR, PauseCause.LOADBALANCER, PauseCause.STORE])
def test_other_pauses_hold_until_they_are_lifted(store: Store, cause: PauseCause) -> None:
    spec = rollout_spec()
    paused(store, cause)
    decision = Gate(store, spec, FakeLoadBalancer()).gate(spec.hosts["web1"], rollback=False)
    assert isinstance(decision, Hold) and decision.cause is None and "to be resumed" in decision.reason


def test_a_closed_window_holds_with_its_cause_and_writes_nothing(store: Store) -> None:
    window = WindowSpec(timezone="UTC", allowed=["Sat 01:00-05:00"])
    spec = rollout_spec(window=window)
    store.create_rollout(spec)
    store.transition_rollout("R1", RolloutState.RUNNING)
    tuesday_noon = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
    decision = Gate(store, spec, FakeLoadBalancer(), clock=lambda: tuesday_noon).gate(
        spec.hosts["web1"], False
    )
    assert isinstance(decision, Hold) and decision.cause is PauseCause.WINDOW
    assert "maintenance window closed; next opens 2026-12-05 01:00 UTC" in decision.reason
    rollout = store.rollout("R1")
    assert rollout is not None and rollout.state is RolloutState.RUNNING  # the gate wrote nothing
