"""What operators (and the approval timeout) do to a rollout: check that the action applies, one
transition, one audit row, then carry the change out at once when ticks can be delivered.

Without a scheduler (an in-process worker in another process runs this rollout), only the store
changes, and that process's reconciler carries the change out within seconds.
"""

from __future__ import annotations

from orchestrator.engine.rollout.coordinator import host_done, start_hosts
from orchestrator.engine.rollout.ports import RolloutStore, Scheduler
from orchestrator.errors import InputError, RolloutRefused
from orchestrator.model.records import Rollout
from orchestrator.model.states import ROLLOUT_DONE, HostState, PauseCause, RolloutState


def _why(actor: str, what: str, reason: str) -> str:
    return f"{what} by {actor}" + (f": {reason}" if reason else "")


def pause(store: RolloutStore, rollout_id: str, actor: str, reason: str = "") -> str:
    rollout = _active(store, rollout_id)
    if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED):
        raise RolloutRefused(f"rollout {rollout_id} is {rollout.state.value}: only a running one can pause")
    store.transition_rollout(
        rollout_id, RolloutState.PAUSED, reason=_why(actor, "paused", reason), cause=PauseCause.OPERATOR
    )
    store.record_action(rollout_id, "pause", actor, reason=reason)
    return "paused: no new host starts; hosts in flight finish and return to the pool"


def unpause(store: RolloutStore, rollout_id: str, actor: str, reason: str = "") -> bool:
    """Lift a pause, whatever its cause (an operator's `resume`). Returns whether it was paused."""
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state is not RolloutState.PAUSED:
        return False
    if store.transition_rollout(rollout_id, RolloutState.RUNNING, only_from=frozenset({RolloutState.PAUSED})):
        store.record_action(rollout_id, "unpause", actor, rollout.reason, reason=reason)
    return True


def abort(store: RolloutStore, scheduler: Scheduler | None, rollout_id: str, actor: str, reason: str) -> str:
    _needs_reason("abort", reason)
    _active(store, rollout_id)
    skipped = store.skip_pending(rollout_id)
    store.transition_rollout(rollout_id, RolloutState.ABORTING, reason=_why(actor, "aborted", reason))
    store.record_action(rollout_id, "abort", actor, f"skipped: {', '.join(skipped) or 'none'}", reason)
    _carry_on(store, scheduler, rollout_id)
    return (
        f"aborting: {len(skipped)} hosts will not start; a host in flight is put back as it was, or "
        "finishes its update and checks (and is reverted if they fail)"
    )


def rollback(
    store: RolloutStore, scheduler: Scheduler | None, rollout_id: str, actor: str, reason: str
) -> str:
    _needs_reason("rollback", reason)
    rollout = store.rollout(rollout_id)
    if rollout is None:
        raise RolloutRefused(f"no rollout {rollout_id}; see `orchestrator history`")
    if rollout.state in ROLLOUT_DONE:
        if rollout.spec.snapshot_retention == "delete_on_success" and rollout.state is RolloutState.SUCCEEDED:
            raise RolloutRefused(
                f"rollout {rollout_id} succeeded and its snapshots were deleted "
                "(retention delete_on_success); use `snapshot: {retention: keep}` to keep "
                "rollback possible after the end"
            )
        store.reacquire_pool(rollout_id, rollout.pool)
    store.skip_pending(rollout_id)
    store.transition_rollout(
        rollout_id, RolloutState.ROLLING_BACK, reason=_why(actor, "rollback requested", reason)
    )
    store.record_action(rollout_id, "rollback", actor, reason=reason)
    _carry_on(store, scheduler, rollout_id)
    return "rolling back: every host this rollout updated is reverted, newest first"


def approve(
    store: RolloutStore, scheduler: Scheduler | None, rollout_id: str, actor: str, reason: str = ""
) -> str:
    rollout = _awaiting(store, rollout_id)
    _other_eyes(rollout, actor, "approve")
    store.transition_rollout(rollout_id, RolloutState.RUNNING, reason="")
    store.record_action(
        rollout_id,
        "approve",
        actor,
        f"batch {rollout.current_batch + 1} may start",
        reason,
        batch=rollout.current_batch,
    )
    hosts = [
        h.name
        for h in store.hosts(rollout_id)
        if h.batch == rollout.current_batch and h.state is HostState.PENDING
    ]
    if scheduler is not None:
        start_hosts(store, scheduler, rollout_id, hosts)
    return f"approved by {actor}: batch {rollout.current_batch + 1} starts ({', '.join(hosts)})"


def reject(store: RolloutStore, scheduler: Scheduler | None, rollout_id: str, actor: str, reason: str) -> str:
    _needs_reason("reject", reason)
    rollout = _awaiting(store, rollout_id)
    _other_eyes(rollout, actor, "reject")
    store.record_action(
        rollout_id,
        "reject",
        actor,
        f"after batch {rollout.current_batch}",
        reason,
        batch=rollout.current_batch,
    )
    store.skip_pending(rollout_id)
    if rollout.spec.on_failure == "rollback_all":
        store.transition_rollout(
            rollout_id, RolloutState.ROLLING_BACK, reason=_why(actor, "rejected", reason) + "; rolling back"
        )
        _carry_on(store, scheduler, rollout_id)
        return f"rejected by {actor}: rolling back every host this rollout updated"
    store.finish_rollout(rollout_id, RolloutState.HALTED, "halted: " + _why(actor, "rejected", reason))
    return f"rejected by {actor}: the rollout stops here"


def _needs_reason(action: str, reason: str) -> None:
    """What stops or undoes a change needs its why on the record (the change report shows it)."""
    if not reason.strip():
        raise InputError("--reason", f"{action} needs a reason", "--reason 'why, in a few words'")


def _other_eyes(rollout: Rollout, actor: str, action: str) -> None:
    requester = rollout.spec.request.requested_by if rollout.spec.request else ""
    if rollout.spec.four_eyes and actor == requester:
        raise RolloutRefused(
            f"rollout {rollout.id} needs four eyes: {actor} requested it and cannot {action} it; "
            "another person must"
        )


def _carry_on(store: RolloutStore, scheduler: Scheduler | None, rollout_id: str) -> None:
    if scheduler is not None:
        host_done(store, scheduler, rollout_id)


def _active(store: RolloutStore, rollout_id: str) -> Rollout:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        state = rollout.state.value if rollout else "unknown"
        raise RolloutRefused(f"rollout {rollout_id} is {state}; see `orchestrator history`")
    return rollout


def _awaiting(store: RolloutStore, rollout_id: str) -> Rollout:
    rollout = _active(store, rollout_id)
    if rollout.state is not RolloutState.AWAITING_APPROVAL:
        raise RolloutRefused(f"rollout {rollout_id} is {rollout.state.value}, not awaiting approval")
    return rollout
