"""Host and rollout states, each with the one table of its legal transitions (the store enforces both),
and why a rollout is paused, as a field of its own (no code reads a reason's text)."""

from __future__ import annotations

from enum import StrEnum

from orchestrator.errors import StateError


class HostState(StrEnum):
    PENDING = "pending"
    DRAINING = "draining"  # drain set in the LB; waiting for sessions to end
    OUT_OF_POOL = "out_of_pool"  # maint set: no traffic at all
    SNAPSHOTTING = "snapshotting"
    UPDATING = "updating"
    CHECKING = "checking"  # new version: checks until stable
    RETURNING = "returning"  # ready set; waiting until the LB's own check says UP
    SUCCEEDED = "succeeded"
    # failure path
    REVERTING = "reverting"  # back to the snapshot
    VERIFYING = "verifying"  # the old version must pass its checks before it serves again
    RESTORING = "restoring"  # old version: ready set, waiting until UP
    ROLLED_BACK = "rolled_back"  # failed, reverted to the snapshot, back in the pool
    FAILED = "failed"  # failed before anything changed on it, back in the pool
    FAILED_OUT = "failed_out"  # failed and NOT back in the pool: needs a human
    SKIPPED = "skipped"  # never started: the rollout halted first


S = HostState
TRANSITIONS: dict[HostState, frozenset[HostState]] = {
    # PENDING -> FAILED: a gate refused for good (capacity never came back, a deadline passed); nothing
    # on the server changed.
    S.PENDING: frozenset({S.DRAINING, S.SKIPPED, S.FAILED}),
    S.DRAINING: frozenset({S.OUT_OF_POOL, S.RESTORING}),
    # OUT_OF_POOL -> REVERTING: rolling back a host this rollout had already updated.
    S.OUT_OF_POOL: frozenset({S.SNAPSHOTTING, S.UPDATING, S.RESTORING, S.REVERTING}),
    S.SNAPSHOTTING: frozenset({S.UPDATING, S.RESTORING}),
    S.UPDATING: frozenset({S.CHECKING, S.REVERTING, S.FAILED_OUT}),
    S.CHECKING: frozenset({S.RETURNING, S.REVERTING, S.FAILED_OUT}),
    S.RETURNING: frozenset({S.SUCCEEDED, S.REVERTING, S.FAILED_OUT}),
    S.REVERTING: frozenset({S.VERIFYING, S.FAILED_OUT}),
    S.VERIFYING: frozenset({S.RESTORING, S.FAILED_OUT}),
    # RESTORING -> PENDING: sessions would not end, the host is postponed to the end of the rollout;
    # RESTORING -> SKIPPED: sessions would not end, the host is left as it was.
    S.RESTORING: frozenset({S.ROLLED_BACK, S.FAILED, S.FAILED_OUT, S.PENDING, S.SKIPPED}),
    # SUCCEEDED -> DRAINING: the whole rollout is being rolled back (rollback_all, `orchestrator rollback`).
    S.SUCCEEDED: frozenset({S.DRAINING}),
}
# Done for the forward rollout (SUCCEEDED may still be rolled back later, on purpose).
TERMINAL = frozenset({S.SUCCEEDED, S.ROLLED_BACK, S.FAILED, S.FAILED_OUT, S.SKIPPED})
FAILURES = frozenset({S.ROLLED_BACK, S.FAILED, S.FAILED_OUT})
# States in which the host is, or may be, out of the load balancer's rotation.
OUT_OF_SERVICE = frozenset(
    {
        S.DRAINING,
        S.OUT_OF_POOL,
        S.SNAPSHOTTING,
        S.UPDATING,
        S.CHECKING,
        S.REVERTING,
        S.VERIFYING,
        S.FAILED_OUT,
    }
)


def check_transition(current: HostState, new: HostState) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise StateError(f"illegal host transition {current.value} -> {new.value}")


class RolloutState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    # No new host starts; hosts in flight finish. The reason says why: an operator, the maintenance
    # window, the load balancer unreachable. Window and load balancer pauses lift by themselves.
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"  # a batch that needs a human's approval is done
    ABORTING = "aborting"  # no new host; hosts in flight are finished or put back, then ABORTED
    ROLLING_BACK = "rolling_back"  # every host this rollout updated is reverted, newest first
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # every host handled; some failed, within the failure budget
    HALTED = "halted"  # failures beyond the budget; the failure policy stopped the rollout
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # the rollout could not go on (a deadline, or the orchestrator itself: see reason)


ROLLOUT_DONE = frozenset(
    {
        RolloutState.SUCCEEDED,
        RolloutState.PARTIAL,
        RolloutState.HALTED,
        RolloutState.ABORTED,
        RolloutState.ROLLED_BACK,
        RolloutState.FAILED,
    }
)


R = RolloutState
ACTIVE = frozenset(set(RolloutState) - ROLLOUT_DONE)
# A finished rollout may be rolled back while its snapshots are kept (`orchestrator rollback`).
_ENDINGS = frozenset({R.SUCCEEDED, R.PARTIAL, R.HALTED, R.ROLLED_BACK, R.FAILED})
ROLLOUT_TRANSITIONS: dict[RolloutState, frozenset[RolloutState]] = {
    R.PENDING: frozenset({R.RUNNING, R.ABORTING, R.FAILED}),
    R.RUNNING: frozenset({R.PAUSED, R.AWAITING_APPROVAL, R.ABORTING, R.ROLLING_BACK} | _ENDINGS),
    # PAUSED -> PAUSED: the cause changes (an operator pauses a rollout the window had paused).
    # PAUSED -> an ending: the last host in flight finished while it was paused.
    # PAUSED -> AWAITING_APPROVAL: the batch before an approval ended while the rollout was paused.
    R.PAUSED: frozenset({R.RUNNING, R.PAUSED, R.AWAITING_APPROVAL, R.ABORTING, R.ROLLING_BACK} | _ENDINGS),
    R.AWAITING_APPROVAL: frozenset({R.RUNNING, R.ABORTING, R.ROLLING_BACK, R.HALTED, R.FAILED}),
    R.ABORTING: frozenset({R.ABORTED, R.FAILED}),
    R.ROLLING_BACK: frozenset({R.ROLLED_BACK, R.ABORTING, R.FAILED}),
    R.SUCCEEDED: frozenset({R.ROLLING_BACK}),
    R.PARTIAL: frozenset({R.ROLLING_BACK}),
    R.HALTED: frozenset({R.ROLLING_BACK}),
    R.ABORTED: frozenset({R.ROLLING_BACK}),
    R.FAILED: frozenset({R.ROLLING_BACK}),
    R.ROLLED_BACK: frozenset(),
}


def check_rollout_transition(current: RolloutState, new: RolloutState) -> None:
    if new not in ROLLOUT_TRANSITIONS.get(current, frozenset()):
        raise StateError(f"illegal rollout transition {current.value} -> {new.value}")


class PauseCause(StrEnum):
    """Why a rollout is PAUSED. Only an operator's pause needs an operator's resume; the others lift by
    themselves when their cause goes away."""

    OPERATOR = "operator"
    WINDOW = "window"  # the maintenance window is closed, or too short for the next host
    LOADBALANCER = "loadbalancer"  # the load balancer does not answer
    STORE = "store"  # the store did not answer for longer than the outage budget
    HYPERVISOR = "hypervisor"  # the hypervisor did not answer before a snapshot could be taken
