"""The tables of legal host and rollout transitions, and the state groups built on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import StateError
from orchestrator.model.states import (
    FAILURES,
    OUT_OF_SERVICE,
    ROLLOUT_DONE,
    ROLLOUT_TRANSITIONS,
    TERMINAL,
    TRANSITIONS,
    HostState,
    PauseCause,
    RolloutState,
    check_rollout_transition,
    check_transition,
)

S = HostState
LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL = sorted((a, b) for a in HostState for b in HostState if b not in TRANSITIONS.get(a, frozenset()))


@pytest.mark.parametrize(("current", "new"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_every_transition_in_the_table_is_accepted(current: HostState, new: HostState) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.PENDING, S.UPDATING),  # never update a server still in the pool
        (S.PENDING, S.SUCCEEDED),
        (S.DRAINING, S.UPDATING),  # maint first
        (S.OUT_OF_POOL, S.CHECKING),
        (S.UPDATING, S.SUCCEEDED),  # checks first
        (S.CHECKING, S.SUCCEEDED),  # the LB must say UP first
        (S.REVERTING, S.RESTORING),  # the old version must pass its checks first
        (S.VERIFYING, S.ROLLED_BACK),
        (S.UPDATING, S.FAILED),  # FAILED means nothing changed: not after an update began
        (S.SUCCEEDED, S.REVERTING),
        (S.FAILED_OUT, S.RESTORING),
        (S.DRAINING, S.DRAINING),
    ],
)
def test_illegal_transitions_raise_state_error_naming_both_states(current: HostState, new: HostState) -> None:
    with pytest.raises(StateError, match=f"illegal host transition {current.value} -> {new.value}"):
        check_transition(current, new)


def test_everything_outside_the_table_is_refused() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(HostState) ** 2
    for current, new in ILLEGAL:
        with pytest.raises(StateError):
            check_transition(current, new)


@pytest.mark.parametrize("state", sorted(TERMINAL - {S.SUCCEEDED}))
def test_terminal_states_have_no_outgoing_transitions(state: HostState) -> None:
    assert not TRANSITIONS.get(state)
    for new in HostState:
        with pytest.raises(StateError):
            check_transition(state, new)


def test_succeeded_moves_only_to_be_rolled_back() -> None:
    assert TRANSITIONS[S.SUCCEEDED] == {S.DRAINING}


def test_every_non_terminal_state_can_move_and_can_end() -> None:
    assert set(TRANSITIONS) == set(HostState) - TERMINAL | {S.SUCCEEDED}
    for start in TRANSITIONS:
        seen, todo = set(), [start]
        while todo:
            for nxt in TRANSITIONS.get(todo.pop(), frozenset()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & TERMINAL, f"{start} can never finish"


def test_every_state_is_reachable_from_pending() -> None:
    seen, todo = {S.PENDING}, [S.PENDING]
    while todo:
        for nxt in TRANSITIONS.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(HostState)


NOT_DONE = {
    RolloutState.PENDING,
    RolloutState.RUNNING,
    RolloutState.PAUSED,
    RolloutState.AWAITING_APPROVAL,
    RolloutState.ABORTING,
    RolloutState.ROLLING_BACK,
}


def test_state_groups() -> None:
    assert FAILURES <= TERMINAL
    assert S.SUCCEEDED not in FAILURES and S.SKIPPED not in FAILURES
    # A finished host is back in service, except the one left out for a human.
    assert {S.FAILED_OUT} == OUT_OF_SERVICE & TERMINAL
    assert S.PENDING not in OUT_OF_SERVICE
    assert set(RolloutState) - NOT_DONE == ROLLOUT_DONE


def test_states_are_stored_as_their_lowercase_names() -> None:
    for state in HostState:
        assert state.value == state.name.lower()
        assert HostState(state.value) is state


# -- rollout transitions

ROLLOUT_STATES = list(RolloutState)


@pytest.mark.parametrize("current", ROLLOUT_STATES, ids=[s.value for s in ROLLOUT_STATES])
def test_each_row_of_the_rollout_table_allows_exactly_its_targets(current: RolloutState) -> None:
    allowed = ROLLOUT_TRANSITIONS[current]
    for target in RolloutState:
        if target in allowed:
            check_rollout_transition(current, target)
        else:
            with pytest.raises(
                StateError, match=f"illegal rollout transition {current.value} -> {target.value}"
            ):
                check_rollout_transition(current, target)


def test_an_ended_rollout_may_only_be_rolled_back_and_rolled_back_is_final() -> None:
    assert ROLLOUT_TRANSITIONS[RolloutState.ROLLED_BACK] == frozenset()
    for ended in ROLLOUT_DONE - {RolloutState.ROLLED_BACK}:
        assert ROLLOUT_TRANSITIONS[ended] == {RolloutState.ROLLING_BACK}  # rollback while snapshots are kept
    assert set(ROLLOUT_TRANSITIONS) == set(RolloutState)


def test_the_store_enforces_the_table_and_the_pause_cause(tmp_path: Path) -> None:
    from orchestrator.store.db import Store
    from tests.unit.fakes import rollout_spec

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.create_rollout(rollout_spec())
    with pytest.raises(StateError, match="illegal rollout transition pending -> succeeded"):
        store.transition_rollout("R1", RolloutState.SUCCEEDED)
    with pytest.raises(StateError, match="needs a cause"):
        store.transition_rollout("R1", RolloutState.PAUSED)
    assert store.transition_rollout("R1", RolloutState.RUNNING)
    assert not store.transition_rollout("R1", RolloutState.RUNNING)  # already: nothing changes
    assert store.transition_rollout("R1", RolloutState.PAUSED, reason="window shut", cause=PauseCause.WINDOW)
    rollout = store.rollout("R1")
    assert (
        rollout is not None and rollout.pause_cause is PauseCause.WINDOW and rollout.reason == "window shut"
    )
    # Only a pause for that cause lifts by itself.
    assert not store.transition_rollout("R1", RolloutState.RUNNING, only_cause=PauseCause.LOADBALANCER)
    assert store.transition_rollout("R1", RolloutState.RUNNING, only_cause=PauseCause.WINDOW)
    rollout = store.rollout("R1")
    assert rollout is not None and rollout.pause_cause is None and rollout.reason == ""
    assert store.finish_rollout("R1", RolloutState.SUCCEEDED, "1 host updated")
    assert not store.finish_rollout("R1", RolloutState.HALTED, "too late")  # one ending wins
