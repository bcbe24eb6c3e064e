"""What the rollout does next: decided from its state and its hosts' states alone (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.rollout.decide import (
    AwaitApproval,
    Finish,
    HostView,
    KeepWaiting,
    RollBackHost,
    RolloutDecision,
    StartBatch,
    next_step,
    within_budget,
)
from orchestrator.model.playbook import FailureBudget
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState, RolloutState
from tests.unit.fakes import host_spec, rollout_spec

S = HostState
R = RolloutState
BATCHES = {"a": 0, "b": 1, "c": 1, "d": 2}


def spec(**overrides: Any) -> RolloutSpec:
    hosts = [host_spec(n) for n in BATCHES]
    return rollout_spec(hosts, batches=[["a"], ["b", "c"], ["d"]], **overrides)


def hosts(**given: HostState) -> list[HostView]:
    return [
        HostView(
            n, b, i, given.get(n, S.PENDING), "boom" if given.get(n) in (S.ROLLED_BACK, S.FAILED_OUT) else ""
        )
        for i, (n, b) in enumerate(BATCHES.items())
    ]


def kind(decision: RolloutDecision) -> str:
    return type(decision).__name__


@pytest.mark.parametrize(
    ("overrides", "state", "batch", "given", "expected"),
    [
        # the happy path, batch by batch
        ({}, R.RUNNING, 0, {}, KeepWaiting()),
        ({}, R.RUNNING, 0, {"a": S.CHECKING}, KeepWaiting()),
        ({}, R.RUNNING, 0, {"a": S.SUCCEEDED}, StartBatch(1, ["b", "c"])),
        ({}, R.RUNNING, 1, {"a": S.SUCCEEDED, "b": S.SUCCEEDED, "c": S.RETURNING}, KeepWaiting()),
        ({}, R.RUNNING, 1, {"a": S.SUCCEEDED, "b": S.SUCCEEDED, "c": S.SUCCEEDED}, StartBatch(2, ["d"])),
        ({}, R.RUNNING, 2, dict.fromkeys("abcd", S.SUCCEEDED), Finish(R.SUCCEEDED, "4 hosts updated")),
        # approval after the canary
        ({"approve_after": [1]}, R.RUNNING, 0, {"a": S.SUCCEEDED}, AwaitApproval(0, 1)),
        ({"approve_after": [3]}, R.RUNNING, 2, dict.fromkeys("abcd", S.SUCCEEDED), "Finish"),
        # halt (default budget: no failure tolerated)
        ({}, R.RUNNING, 0, {"a": S.ROLLED_BACK}, "Finish:halted"),
        ({}, R.RUNNING, 1, {"a": S.SUCCEEDED, "b": S.FAILED_OUT, "c": S.CHECKING}, KeepWaiting()),
        ({}, R.RUNNING, 1, {"a": S.SUCCEEDED, "b": S.FAILED_OUT, "c": S.SUCCEEDED}, "Finish:halted"),
        # continue within the budget, halt beyond it
        (
            {"on_failure": "continue", "failure_budget": FailureBudget(count=1)},
            R.RUNNING,
            1,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.SUCCEEDED},
            StartBatch(2, ["d"]),
        ),
        (
            {"on_failure": "continue", "failure_budget": FailureBudget(count=1)},
            R.RUNNING,
            2,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.SUCCEEDED, "d": S.SUCCEEDED},
            "Finish:partial",
        ),
        (
            {"on_failure": "continue", "failure_budget": FailureBudget(count=1)},
            R.RUNNING,
            1,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.ROLLED_BACK},
            "Finish:halted",
        ),
        (
            {"on_failure": "continue", "failure_budget": FailureBudget(count=3, percent="25%")},
            R.RUNNING,
            1,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.ROLLED_BACK},
            "Finish:halted",
        ),
        # rollback_all: newest first, then the end
        (
            {"on_failure": "rollback_all"},
            R.RUNNING,
            1,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.SUCCEEDED},
            RollBackHost("c"),
        ),
        (
            {"on_failure": "rollback_all"},
            R.ROLLING_BACK,
            1,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.REVERTING},
            KeepWaiting(),
        ),
        (
            {"on_failure": "rollback_all"},
            R.ROLLING_BACK,
            1,
            {"a": S.SUCCEEDED, "b": S.ROLLED_BACK, "c": S.ROLLED_BACK},
            RollBackHost("a"),
        ),
        (
            {"on_failure": "rollback_all"},
            R.ROLLING_BACK,
            1,
            {"a": S.ROLLED_BACK, "b": S.ROLLED_BACK, "c": S.ROLLED_BACK, "d": S.SKIPPED},
            "Finish:rolled_back",
        ),
        ({"on_failure": "rollback_all"}, R.RUNNING, 0, {"a": S.ROLLED_BACK}, "Finish:rolled_back"),
        # abort: hosts in flight finish first
        (
            {},
            R.ABORTING,
            1,
            {"a": S.SUCCEEDED, "b": S.UPDATING, "c": S.SKIPPED, "d": S.SKIPPED},
            KeepWaiting(),
        ),
        (
            {},
            R.ABORTING,
            1,
            {"a": S.SUCCEEDED, "b": S.SUCCEEDED, "c": S.SKIPPED, "d": S.SKIPPED},
            "Finish:aborted",
        ),
    ],
)
def test_next_step(
    overrides: dict[str, Any],
    state: RolloutState,
    batch: int,
    given: dict[str, HostState],
    expected: RolloutDecision | str,
) -> None:
    decision = next_step(spec(**overrides), state, batch, hosts(**given))
    if isinstance(expected, str):
        what, _, final = expected.partition(":")
        assert kind(decision) == what, decision
        if final:
            assert isinstance(decision, Finish) and decision.state.value == final, decision
    else:
        assert decision == expected


def test_a_halt_names_the_failed_host_and_a_host_out_of_the_pool_first() -> None:
    decision = next_step(spec(), R.RUNNING, 1, hosts(a=S.SUCCEEDED, b=S.FAILED_OUT, c=S.ROLLED_BACK))
    assert isinstance(decision, Finish)
    assert decision.reason.startswith("halted: 2 failed")
    assert "b OUT OF THE POOL, needs a human" in decision.reason and "c rolled_back: boom" in decision.reason


@pytest.mark.parametrize(
    ("count", "percent", "failures", "total", "ok"),
    [
        (0, "100%", 0, 4, True),
        (0, "100%", 1, 4, False),
        (2, "100%", 2, 4, True),
        (2, "25%", 2, 4, False),
        (5, "25%", 1, 4, True),
        (5, 50, 2, 4, True),
        (5, 50, 3, 4, False),
        (1, "10%", 1, 20, True),
    ],
)
def test_failure_budget(count: int, percent: int | str, failures: int, total: int, ok: bool) -> None:
    assert (
        within_budget(
            rollout_spec(failure_budget=FailureBudget(count=count, percent=percent)), failures, total
        )
        is ok
    )
