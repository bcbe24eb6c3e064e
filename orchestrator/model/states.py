"""Host and rollout states, and the one table of legal host transitions."""

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
