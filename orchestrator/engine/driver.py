"""Runs a rollout over the store: starts it, advances one host per tick, moves batch to batch, and
recovers what a crash left behind.

Independent of Celery: a Scheduler says how the next tick is delivered (a Celery task with a
countdown in production, a direct call in unit tests).

Crash safety rests on three things in the store:
- a *token* per host: each scheduled tick carries the host's current token and rotates it; a tick
  delivered twice (broker redelivery, a duplicate from the reconciler) finds an old token and is dropped,
  so a host never has two tick chains;
- a *lease* per host, held while a tick acts (extended over a long command): a second worker never acts
  on the same host at once. A lease held by a process of this machine that no longer exists is free;
- the *progress* saved after every decision, including the marker of a command in flight.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from orchestrator.engine.controls import StoreControls
from orchestrator.engine.pipeline import HostPipeline, Progress
from orchestrator.engine.rollout import (
    AwaitApproval,
    Finish,
    HostView,
    KeepWaiting,
    RollBackHost,
    StartBatch,
    next_step,
)
from orchestrator.engine.secrets import SecretValues
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import OrchestratorError, RolloutRefused
from orchestrator.model.states import ACTIVE, ROLLOUT_DONE, TERMINAL, HostState, PauseCause, RolloutState
from orchestrator.procs import alive
from orchestrator.store.db import Rollout, Store, now

log = logging.getLogger(__name__)

LEASE = 60.0  # seconds a tick may act on a host before its claim must be renewed
OWNER = f"{socket.gethostname()}/{os.getpid()}"


StartRollout = Callable[[Path, Path, tuple[str, ...]], str]


class Scheduler(Protocol):
    def tick(self, rollout_id: str, host: str, token: str, delay: float = 0.0) -> None: ...


class StoreJournal:
    def __init__(self, store: Store, rollout_id: str, owner: str) -> None:
        self.store = store
        self.rollout_id = rollout_id
        self.owner = owner

    def save(self, host: str, state: HostState, progress: Progress) -> None:
        self.store.save_host(self.rollout_id, host, state, progress.to_json())

    def hold(self, host: str, seconds: float) -> None:
        self.store.extend_lease(self.rollout_id, host, self.owner, seconds)

    def started(self, host: str, step: str, detail: str) -> int:
        return self.store.step_started(self.rollout_id, host, step, detail)

    def ended(
        self,
        step_id: int,
        outcome: str,
        detail: str,
        *,
        work: float,
        exit_code: int | None = None,
        output_tail: str = "",
    ) -> None:
        self.store.step_ended(
            step_id, outcome, detail, work=work, exit_code=exit_code, output_tail=output_tail
        )


def owner_alive(owner: str) -> bool:
    """False only when the owner is a process of this machine that is gone (or a zombie)."""
    host, _, pid = owner.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's worker: only its lease's expiry can tell
    return alive(int(pid))


def schedule(store: Store, scheduler: Scheduler, rollout_id: str, host: str, delay: float = 0.0) -> None:
    """Start (or restart) the host's one tick chain."""
    scheduler.tick(rollout_id, host, store.new_token(rollout_id, host), delay)


def start(store: Store, scheduler: Scheduler, rollout_id: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state is not RolloutState.PENDING:
        return  # a duplicate delivery of the start message
    if not store.transition_rollout(
        rollout_id, RolloutState.RUNNING, only_from=frozenset({RolloutState.PENDING})
    ):
        return
    for host in rollout.spec.batches[0]:
        schedule(store, scheduler, rollout_id, host)


def tick(
    store: Store,
    runtime: Runtime,
    scheduler: Scheduler,
    rollout_id: str,
    host: str,
    token: str,
    owner: str = OWNER,
) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        return
    claimed = store.claim_host(rollout_id, host, token, owner, LEASE, alive=owner_alive)
    if claimed == "stale":
        return  # a duplicate or superseded delivery: the current chain goes on without it
    if claimed == "busy":
        scheduler.tick(rollout_id, host, token, 1.0)  # someone is acting on it right now: look again later
        return
    status = store.host(rollout_id, host)
    delay: float | None = None
    try:
        if status.state not in TERMINAL or (
            status.progress.get("rollback") and status.state is HostState.SUCCEEDED
        ):
            spec = rollout.spec
            adapters = runtime.adapters(spec)
            adapters.controls = StoreControls(store, spec, adapters.lb)
            pipeline = HostPipeline(spec, spec.hosts[host], adapters, StoreJournal(store, rollout_id, owner))
            _, progress, delay = pipeline.advance(status.state, Progress.from_json(status.progress))
            _note_blocked(store, rollout_id, host, progress)
    except Exception as exc:  # a bug or a dead store: stop loudly, naming where the host stands
        log.exception("tick of %s/%s crashed", rollout_id, host)
        current = store.host(rollout_id, host)
        store.transition_rollout(
            rollout_id,
            RolloutState.FAILED,
            reason=f"internal error on {host} in state {current.state.value}: {exc!r}",
            only_from=ACTIVE,
        )
        return
    finally:
        store.release_host(rollout_id, host, owner)
    if delay is not None:
        schedule(store, scheduler, rollout_id, host, delay)
        return
    host_done(store, scheduler, rollout_id, runtime)


def _note_blocked(store: Store, rollout_id: str, host: str, progress: Progress) -> None:
    """A host blocked by an unreachable load balancer pauses the rollout, saying where each host is."""
    rollout = store.rollout(rollout_id)
    if rollout is None:
        return
    if progress.blocked and rollout.state is RolloutState.RUNNING:
        where = ", ".join(f"{h.name} {h.state.value}" for h in store.hosts(rollout_id))
        store.transition_rollout(
            rollout_id,
            RolloutState.PAUSED,
            reason=f"{progress.blocked}; retrying. Hosts: {where}",
            cause=PauseCause.LOADBALANCER,
            only_from=frozenset({RolloutState.RUNNING}),
        )
    elif not progress.blocked and rollout.pause_cause is PauseCause.LOADBALANCER:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=PauseCause.LOADBALANCER)
    # The gate decides about the window and writes nothing; its decision is carried out here.
    if progress.held_by == PauseCause.WINDOW:
        store.transition_rollout(
            rollout_id,
            RolloutState.PAUSED,
            reason=progress.held_why,
            cause=PauseCause.WINDOW,
            only_from=frozenset({RolloutState.RUNNING}),
        )
    elif progress.passed_gate and rollout.pause_cause is PauseCause.WINDOW:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=PauseCause.WINDOW)


def _views(store: Store, rollout_id: str) -> list[HostView]:
    return [
        HostView(h.name, h.batch, i, h.state, str(h.progress.get("error", "")))
        for i, h in enumerate(store.hosts(rollout_id))
    ]


def host_done(store: Store, scheduler: Scheduler, rollout_id: str, runtime: Runtime | None = None) -> None:
    """A host finished (or the rollout's state changed): decide what the rollout does next."""
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE or rollout.state is RolloutState.AWAITING_APPROVAL:
        return
    decision = next_step(rollout.spec, rollout.state, rollout.current_batch, _views(store, rollout_id))
    if isinstance(decision, KeepWaiting):
        return
    if isinstance(decision, StartBatch):
        # Several hosts of a batch may finish at once in different workers: one claim wins.
        if store.claim_next_batch(rollout_id, rollout.current_batch):
            start_hosts(store, scheduler, rollout_id, decision.hosts)
        return
    if isinstance(decision, AwaitApproval):
        if store.claim_next_batch(rollout_id, rollout.current_batch):
            spec = rollout.spec
            store.transition_rollout(
                rollout_id,
                RolloutState.AWAITING_APPROVAL,
                reason=f"batch {decision.done_batch + 1} done; `orchestrator approve {rollout_id} --as NAME` "
                f"or `orchestrator reject {rollout_id} --as NAME` (after {spec.approval_timeout:g}s: "
                f"{spec.on_approval_timeout})",
            )
            store.record_action(
                rollout_id, "approval_requested", "orchestrator", f"after batch {decision.done_batch + 1}"
            )
        return
    if isinstance(decision, RollBackHost):
        if rollout.state is not RolloutState.ROLLING_BACK:
            store.skip_pending(rollout_id)
            store.transition_rollout(
                rollout_id, RolloutState.ROLLING_BACK, reason="rollback_all after failures"
            )
        _start_rollback(store, scheduler, rollout_id, decision.host)
        return
    assert isinstance(decision, Finish)
    store.skip_pending(rollout_id)
    if store.finish_rollout(rollout_id, decision.state, decision.reason) and decision.succeeded:
        _delete_snapshots(store, rollout, runtime)


def start_hosts(store: Store, scheduler: Scheduler, rollout_id: str, hosts: list[str]) -> None:
    for name in hosts:
        status = store.host(rollout_id, name)
        if status.progress.get("outcome") == "postpone":  # its second chance starts now
            store.save_host(rollout_id, name, status.state, {**status.progress, "outcome": ""})
        schedule(store, scheduler, rollout_id, name)


def _start_rollback(store: Store, scheduler: Scheduler, rollout_id: str, host: str) -> None:
    status = store.host(rollout_id, host)
    if status.progress.get("rollback"):
        return  # already on its way back
    store.save_host(rollout_id, host, status.state, {**status.progress, "rollback": True, "reverted": False})
    schedule(store, scheduler, rollout_id, host)


def _delete_snapshots(store: Store, rollout: Rollout, runtime: Runtime | None) -> None:
    """retention delete_on_success: once the whole rollout succeeded, its snapshots go (best effort)."""
    spec = rollout.spec
    if runtime is None or not spec.snapshot_enabled or spec.snapshot_retention != "delete_on_success":
        return
    secrets = SecretValues(spec.secrets)
    for status in store.hosts(rollout.id):
        name = str(status.progress.get("snapshot", ""))
        snapshots = runtime.snapshots(spec, spec.hosts[status.name], secrets) if name else None
        if snapshots is None:
            continue
        try:
            snapshots.delete(spec.hosts[status.name].domain, name)
            store.record_action(rollout.id, "snapshot_deleted", "orchestrator", f"{status.name}: {name}")
        except OrchestratorError as exc:
            store.record_action(rollout.id, "snapshot_kept", "orchestrator", f"{status.name}: {name}: {exc}")


# operator actions
def pause(store: Store, rollout_id: str, actor: str) -> str:
    rollout = _active(store, rollout_id)
    if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED):
        raise RolloutRefused(f"rollout {rollout_id} is {rollout.state.value}: only a running one can pause")
    store.transition_rollout(
        rollout_id, RolloutState.PAUSED, reason=f"paused by {actor}", cause=PauseCause.OPERATOR
    )
    store.record_action(rollout_id, "pause", actor)
    return "paused: no new host starts; hosts in flight finish and return to the pool"


def unpause(store: Store, rollout_id: str, actor: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is not None and rollout.state is RolloutState.PAUSED:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_from=frozenset({RolloutState.PAUSED}))
        store.record_action(rollout_id, "unpause", actor, rollout.reason)


def abort(store: Store, scheduler: Scheduler | None, rollout_id: str, actor: str) -> str:
    _active(store, rollout_id)
    skipped = store.skip_pending(rollout_id)
    store.transition_rollout(rollout_id, RolloutState.ABORTING, reason=f"aborted by {actor}")
    store.record_action(rollout_id, "abort", actor, f"skipped: {', '.join(skipped) or 'none'}")
    _carry_on(store, scheduler, rollout_id)
    return (
        f"aborting: {len(skipped)} hosts will not start; a host in flight is put back as it was, or "
        "finishes its update and checks (and is reverted if they fail)"
    )


def rollback(store: Store, scheduler: Scheduler | None, rollout_id: str, actor: str) -> str:
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
    store.transition_rollout(rollout_id, RolloutState.ROLLING_BACK, reason=f"rollback requested by {actor}")
    store.record_action(rollout_id, "rollback", actor)
    _carry_on(store, scheduler, rollout_id)
    return "rolling back: every host this rollout updated is reverted, newest first"


def approve(store: Store, scheduler: Scheduler | None, rollout_id: str, actor: str) -> str:
    rollout = _awaiting(store, rollout_id)
    store.transition_rollout(rollout_id, RolloutState.RUNNING, reason="")
    store.record_action(rollout_id, "approve", actor, f"batch {rollout.current_batch + 1} may start")
    hosts = [
        h.name
        for h in store.hosts(rollout_id)
        if h.batch == rollout.current_batch and h.state is HostState.PENDING
    ]
    if scheduler is not None:
        start_hosts(store, scheduler, rollout_id, hosts)
    return f"approved by {actor}: batch {rollout.current_batch + 1} starts ({', '.join(hosts)})"


def reject(store: Store, scheduler: Scheduler | None, rollout_id: str, actor: str) -> str:
    rollout = _awaiting(store, rollout_id)
    store.record_action(rollout_id, "reject", actor)
    store.skip_pending(rollout_id)
    if rollout.spec.on_failure == "rollback_all":
        store.transition_rollout(
            rollout_id, RolloutState.ROLLING_BACK, reason=f"rejected by {actor}: rolling back"
        )
        _carry_on(store, scheduler, rollout_id)
        return f"rejected by {actor}: rolling back every host this rollout updated"
    store.finish_rollout(rollout_id, RolloutState.HALTED, f"halted: rejected by {actor}")
    return f"rejected by {actor}: the rollout stops here"


def _carry_on(store: Store, scheduler: Scheduler | None, rollout_id: str) -> None:
    """Act on a state change now when we can deliver ticks; otherwise (an in-process worker in another
    process runs this rollout) its reconciler carries the change out within seconds."""
    if scheduler is not None:
        host_done(store, scheduler, rollout_id)


def _active(store: Store, rollout_id: str) -> Rollout:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        state = rollout.state.value if rollout else "unknown"
        raise RolloutRefused(f"rollout {rollout_id} is {state}; see `orchestrator history`")
    return rollout


def _awaiting(store: Store, rollout_id: str) -> Rollout:
    rollout = _active(store, rollout_id)
    if rollout.state is not RolloutState.AWAITING_APPROVAL:
        raise RolloutRefused(f"rollout {rollout_id} is {rollout.state.value}, not awaiting approval")
    return rollout


def _approval_timeouts(store: Store, scheduler: Scheduler, rollout: Rollout) -> list[str]:
    asked = [at for at, action, _, _ in store.actions(rollout.id) if action == "approval_requested"]
    if not asked or now() - asked[-1] < rollout.spec.approval_timeout:
        return []
    decide = approve if rollout.spec.on_approval_timeout == "approve" else reject
    return [
        f"approval timed out after {rollout.spec.approval_timeout:g}s: "
        f"{decide(store, scheduler, rollout.id, 'approval timeout')}"
    ]


def resume(
    store: Store, scheduler: Scheduler, rollout_id: str, *, actor: str, quiet_for: float = 0.0
) -> list[str]:
    """Restart the tick chains of every host in flight (those nobody holds), and the batch logic.
    Returns what was done, one line each. Used by `orchestrator resume` and the reconciler."""
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        return []
    done: list[str] = []
    if rollout.state is RolloutState.PENDING:
        start(store, scheduler, rollout_id)
        return [f"{rollout_id}: started"]
    for host in store.stalled_hosts(rollout_id, quiet_for=quiet_for, alive=owner_alive):
        state = store.host(rollout_id, host).state
        schedule(store, scheduler, rollout_id, host)
        done.append(f"{host}: resumed in {state.value}")
    unstarted = [
        h.name
        for h in store.hosts(rollout_id)
        if h.batch == rollout.current_batch and h.state is HostState.PENDING and not h.token
    ]
    if unstarted and rollout.state in (RolloutState.RUNNING, RolloutState.PAUSED):
        start_hosts(store, scheduler, rollout_id, unstarted)  # approved from another process, say
        done.append(f"started {', '.join(unstarted)}")
    if rollout.state is RolloutState.AWAITING_APPROVAL:
        done += _approval_timeouts(store, scheduler, rollout)
    elif not any(
        h.state not in TERMINAL and h.state is not HostState.PENDING for h in store.hosts(rollout_id)
    ):
        host_done(store, scheduler, rollout_id)  # a crash between a host's end and what comes next
        after = store.rollout(rollout_id)
        if after is not None and (after.state, after.current_batch) != (rollout.state, rollout.current_batch):
            done.append(f"moved on: {after.state.value}, batch {after.current_batch + 1}")
    for line in done:
        store.record_action(rollout_id, "resume", actor, line)
    return done


def reconcile(store: Store, scheduler: Scheduler, *, quiet_for: float = 30.0) -> list[str]:
    """Find rollouts that say running but make no progress, and resume them."""
    lines: list[str] = []
    for rollout in store.active_rollouts():
        if rollout.state is RolloutState.PENDING and now() - rollout.created_at < quiet_for:
            continue  # its start message is probably on its way
        lines += [
            f"{rollout.id} {line}"
            for line in resume(store, scheduler, rollout.id, actor="reconciler", quiet_for=quiet_for)
        ]
    return lines


def reconcile_forever(
    store: Store,
    scheduler: Scheduler,
    *,
    every: float = 5.0,
    quiet_for: float = 30.0,
    stop: threading.Event | None = None,
    start: StartRollout | None = None,
) -> None:
    """The reconciler loop run by every worker (a thread); any number of them may run at once. With
    ``start``, it also starts the schedules that came due (each claimed by exactly one worker)."""
    from orchestrator.schedule import due_rollouts

    event = stop or threading.Event()
    while not event.wait(every):
        try:
            for line in reconcile(store, scheduler, quiet_for=quiet_for):
                log.warning("reconciler: %s", line)
            if start is not None:
                for schedule_row in due_rollouts(store, now(), start):
                    log.warning(
                        "scheduler: schedule %s -> %s %s",
                        schedule_row.id,
                        schedule_row.state,
                        schedule_row.rollout_id or schedule_row.detail,
                    )
        except Exception:  # the store may be down for a moment; the next round tries again
            log.exception("reconciler round failed")
