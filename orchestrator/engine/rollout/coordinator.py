"""Runs a rollout over the store: starts it, advances one host per tick, moves batch to batch, and
carries out what the hosts' ticks found (a load balancer gone, the window closed).

Independent of Celery: a Scheduler says how the next tick is delivered (a Celery task with a countdown
in production, a direct call in tests). Crash safety rests on three things in the store:
- a *token* per host: each scheduled tick carries the host's current token and rotates it; a tick
  delivered twice (broker redelivery, a duplicate from the reconciler) finds an old token and is dropped,
  so a host never has two tick chains;
- a *lease* per host, held while a tick acts (extended over a long command): a second worker never acts
  on the same host at once. A lease held by a process of this machine that no longer exists is free;
- the *progress* saved after every decision, including the marker of a command in flight.
"""

from __future__ import annotations

import logging
import socket

from orchestrator.engine.host.machine import HostPipeline
from orchestrator.engine.rollout.decide import (
    AwaitApproval,
    Finish,
    HostView,
    KeepWaiting,
    RollBackHost,
    StartBatch,
    next_step,
)
from orchestrator.engine.rollout.gate import Gate
from orchestrator.engine.rollout.ports import RolloutStore, Scheduler
from orchestrator.engine.secrets import SecretValues
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import OrchestratorError
from orchestrator.model.progress import Progress
from orchestrator.model.records import Rollout
from orchestrator.model.states import ACTIVE, ROLLOUT_DONE, TERMINAL, HostState, PauseCause, RolloutState
from orchestrator.procs import OWNER, alive

log = logging.getLogger(__name__)

LEASE = 60.0  # seconds a tick may act on a host before its claim must be renewed
RUNNING_ONLY = frozenset({RolloutState.RUNNING})


class StoreJournal:
    """The host pipeline's HostStore, over the rollout store, for one rollout and one owner."""

    def __init__(self, store: RolloutStore, rollout_id: str, owner: str) -> None:
        self.store = store
        self.rollout_id = rollout_id
        self.owner = owner

    def save(self, host: str, state: HostState, progress: Progress) -> None:
        self.store.save_host(self.rollout_id, host, state, progress)

    def hold(self, host: str, seconds: float) -> None:
        self.store.extend_lease(self.rollout_id, host, self.owner, seconds)

    def step_started(self, host: str, step: str, detail: str) -> int:
        return self.store.step_started(self.rollout_id, host, step, detail)

    def step_ended(
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


def enqueue(
    store: RolloutStore, scheduler: Scheduler, rollout_id: str, host: str, delay: float = 0.0
) -> None:
    """Start (or restart) the host's one tick chain."""
    scheduler.send_tick(rollout_id, host, store.new_token(rollout_id, host), delay)


def start(store: RolloutStore, scheduler: Scheduler, rollout_id: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or not store.transition_rollout(
        rollout_id, RolloutState.RUNNING, only_from=frozenset({RolloutState.PENDING})
    ):
        return  # a duplicate delivery of the start message
    for host in rollout.spec.batches[0]:
        enqueue(store, scheduler, rollout_id, host)


def tick(
    store: RolloutStore,
    runtime: Runtime,
    scheduler: Scheduler,
    rollout_id: str,
    host: str,
    token: str,
    owner: str = OWNER,
) -> None:
    """One host's tick: act on it until it must wait (then schedule the next tick) or is done (then
    decide what the rollout does next)."""
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        return
    claimed = store.claim_host(rollout_id, host, token, owner, LEASE, alive=owner_alive)
    if claimed == "stale":
        return  # a duplicate or superseded delivery: the current chain goes on without it
    if claimed == "busy":
        scheduler.send_tick(
            rollout_id, host, token, 1.0
        )  # someone is acting on it right now: look again later
        return
    status = store.host(rollout_id, host)
    delay: float | None = None
    try:
        if status.state not in TERMINAL or (status.progress.rollback and status.state is HostState.SUCCEEDED):
            spec = rollout.spec
            adapters = runtime.adapters(spec)
            pipeline = HostPipeline(
                spec,
                spec.hosts[host],
                adapters,
                StoreJournal(store, rollout_id, owner),
                controls=Gate(store, spec, adapters.lb),
            )
            _, progress, delay = pipeline.advance(status.state, status.progress)
            follow_host(store, rollout_id, progress)
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
        enqueue(store, scheduler, rollout_id, host, delay)
        return
    host_done(store, scheduler, rollout_id, runtime)


def follow_host(store: RolloutStore, rollout_id: str, progress: Progress) -> None:
    """What a host's tick found that concerns the whole rollout: the load balancer unreachable pauses it
    (saying where each host is) and its return resumes it; the gate holding a host for the window pauses
    it, and a host passing the gate resumes it."""
    rollout = store.rollout(rollout_id)
    if rollout is None:
        return
    if progress.blocked:
        where = ", ".join(f"{h.name} {h.state.value}" for h in store.hosts(rollout_id))
        store.transition_rollout(
            rollout_id,
            RolloutState.PAUSED,
            reason=f"{progress.blocked}; retrying. Hosts: {where}",
            cause=PauseCause.LOADBALANCER,
            only_from=RUNNING_ONLY,
        )
    elif rollout.pause_cause is PauseCause.LOADBALANCER:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=PauseCause.LOADBALANCER)
    if progress.held_by == PauseCause.WINDOW:
        store.transition_rollout(
            rollout_id,
            RolloutState.PAUSED,
            reason=progress.held_why,
            cause=PauseCause.WINDOW,
            only_from=RUNNING_ONLY,
        )
    elif progress.passed_gate and rollout.pause_cause is PauseCause.WINDOW:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=PauseCause.WINDOW)


def _views(store: RolloutStore, rollout_id: str) -> list[HostView]:
    return [
        HostView(h.name, h.batch, i, h.state, h.progress.error) for i, h in enumerate(store.hosts(rollout_id))
    ]


def host_done(
    store: RolloutStore, scheduler: Scheduler, rollout_id: str, runtime: Runtime | None = None
) -> None:
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
        roll_back_host(store, scheduler, rollout_id, decision.host)
        return
    assert isinstance(decision, Finish)
    store.skip_pending(rollout_id)
    if store.finish_rollout(rollout_id, decision.state, decision.reason) and decision.succeeded:
        _delete_snapshots(store, rollout, runtime)


def start_hosts(store: RolloutStore, scheduler: Scheduler, rollout_id: str, hosts: list[str]) -> None:
    for name in hosts:
        status = store.host(rollout_id, name)
        if status.progress.postponed_host_restarts():  # its second chance starts now
            store.save_host(rollout_id, name, status.state, status.progress)
        enqueue(store, scheduler, rollout_id, name)


def roll_back_host(store: RolloutStore, scheduler: Scheduler, rollout_id: str, host: str) -> None:
    status = store.host(rollout_id, host)
    if status.progress.rollback:
        return  # already on its way back
    store.save_host(rollout_id, host, status.state, status.progress.for_rollback())
    enqueue(store, scheduler, rollout_id, host)


def _delete_snapshots(store: RolloutStore, rollout: Rollout, runtime: Runtime | None) -> None:
    """retention delete_on_success: once the whole rollout succeeded, its snapshots go (best effort)."""
    spec = rollout.spec
    if runtime is None or not spec.snapshot_enabled or spec.snapshot_retention != "delete_on_success":
        return
    secrets = SecretValues(spec.secrets)
    for status in store.hosts(rollout.id):
        name = status.progress.snapshot
        snapshots = runtime.snapshots(spec, spec.hosts[status.name], secrets) if name else None
        if snapshots is None:
            continue
        try:
            snapshots.delete(spec.hosts[status.name].domain, name)
            store.record_action(rollout.id, "snapshot_deleted", "orchestrator", f"{status.name}: {name}")
        except OrchestratorError as exc:
            store.record_action(rollout.id, "snapshot_kept", "orchestrator", f"{status.name}: {name}: {exc}")
