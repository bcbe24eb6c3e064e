"""What the rollout does when a host finishes: decided from the hosts' states alone."""

from __future__ import annotations

import pytest

from orchestrator.engine.rollout import Finish, KeepWaiting, RolloutDecision, StartBatch, after_host
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState
from tests.unit.fakes import host_spec, rollout_spec

S = HostState


def spec() -> RolloutSpec:
    hosts = [host_spec(n) for n in ("a", "b", "c", "d")]
    return rollout_spec(hosts, batches=[["a"], ["b", "c"], ["d"]])


def states(**given: HostState) -> dict[str, HostState]:
    return {"a": S.PENDING, "b": S.PENDING, "c": S.PENDING, "d": S.PENDING} | given


@pytest.mark.parametrize(
    ("batch", "hosts", "expected"),
    [
        (0, states(), KeepWaiting()),
        (0, states(a=S.CHECKING), KeepWaiting()),
        (0, states(a=S.SUCCEEDED), StartBatch(1, ["b", "c"])),
        (1, states(a=S.SUCCEEDED, b=S.SUCCEEDED, c=S.RETURNING), KeepWaiting()),
        # a failed host does not halt until its whole batch is done: the others must finish cleanly
        (1, states(a=S.SUCCEEDED, b=S.ROLLED_BACK, c=S.UPDATING), KeepWaiting()),
        (1, states(a=S.SUCCEEDED, b=S.SUCCEEDED, c=S.SUCCEEDED), StartBatch(2, ["d"])),
        (
            2,
            states(a=S.SUCCEEDED, b=S.SUCCEEDED, c=S.SUCCEEDED, d=S.SUCCEEDED),
            Finish(True, "4 hosts updated"),
        ),
    ],
    ids=[
        "nothing done",
        "running",
        "next batch",
        "batch half done",
        "failed but batch running",
        "third batch",
        "all done",
    ],
)
def test_after_host(batch: int, hosts: dict[str, HostState], expected: RolloutDecision) -> None:
    assert after_host(spec(), batch, hosts, {}) == expected


@pytest.mark.parametrize("failed", [S.ROLLED_BACK, S.FAILED, S.FAILED_OUT])
def test_a_failed_host_halts_the_rollout_naming_it(failed: HostState) -> None:
    hosts = states(a=S.SUCCEEDED, b=S.SUCCEEDED, c=failed)
    decision = after_host(spec(), 1, hosts, {"c": "'run install' exited 1: disk full"})
    assert isinstance(decision, Finish)
    assert not decision.succeeded
    assert decision.reason.startswith("halted: ")
    assert f"c {failed.value}: 'run install' exited 1: disk full" in decision.reason
    assert "b " not in decision.reason


def test_failed_out_hosts_are_named_first_and_loudly() -> None:
    hosts = states(a=S.SUCCEEDED, b=S.FAILED_OUT, c=S.ROLLED_BACK)
    decision = after_host(spec(), 1, hosts, {"b": "still unhealthy", "c": "checks did not pass"})
    assert decision == Finish(
        False,
        "halted: b OUT OF THE POOL, needs a human; b failed_out: still unhealthy; "
        "c rolled_back: checks did not pass",
    )


def test_a_failure_without_a_recorded_error_still_reads_cleanly() -> None:
    decision = after_host(spec(), 0, states(a=S.FAILED), {})
    assert decision == Finish(False, "halted: a failed")


def test_one_host_one_batch() -> None:
    one = rollout_spec([host_spec("solo")])
    decision = after_host(one, 0, {"solo": S.SUCCEEDED}, {})
    assert isinstance(decision, Finish) and decision.succeeded
    assert "1 host" in decision.reason
