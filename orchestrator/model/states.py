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
    S.PENDING: frozenset({S.DRAINING, S.SKIPPED}),
    S.DRAINING: frozenset({S.OUT_OF_POOL, S.RESTORING}),
    S.OUT_OF_POOL: frozenset({S.SNAPSHOTTING, S.UPDATING, S.RESTORING}),
    S.SNAPSHOTTING: frozenset({S.UPDATING, S.RESTORING}),
    S.UPDATING: frozenset({S.CHECKING, S.REVERTING, S.FAILED_OUT}),
    S.CHECKING: frozenset({S.RETURNING, S.REVERTING, S.FAILED_OUT}),
    S.RETURNING: frozenset({S.SUCCEEDED, S.REVERTING, S.FAILED_OUT}),
    S.REVERTING: frozenset({S.VERIFYING, S.FAILED_OUT}),
    S.VERIFYING: frozenset({S.RESTORING, S.FAILED_OUT}),
    S.RESTORING: frozenset({S.ROLLED_BACK, S.FAILED, S.FAILED_OUT}),
}
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
    PAUSED = "paused"  # waiting for a condition to clear (e.g. the load balancer unreachable); says why
    SUCCEEDED = "succeeded"
    HALTED = "halted"  # a host failed; the failure policy stopped the rollout
    FAILED = "failed"  # the orchestrator itself could not go on (see the reason)


ROLLOUT_DONE = frozenset({RolloutState.SUCCEEDED, RolloutState.HALTED, RolloutState.FAILED})
