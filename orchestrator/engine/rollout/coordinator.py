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

import contextlib
import logging

from orchestrator.engine.host.machine import HostPipeline
from orchestrator.engine.rollout import watch
from orchestrator.engine.rollout.claims import LEASE, StoreJournal, owner_alive
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
from orchestrator.engine.rollout.pauses import follow_host, hypervisor_down, record_outage
from orchestrator.engine.rollout.ports import RolloutStore, Scheduler
from orchestrator.engine.secrets import SecretValues
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import OrchestratorError, StoreUnavailable, Superseded
from orchestrator.model.records import Rollout
from orchestrator.model.states import ACTIVE, ROLLOUT_DONE, TERMINAL, HostState, RolloutState
from orchestrator.procs import OWNER

log = logging.getLogger(__name__)

RUNNING_ONLY = frozenset({RolloutState.RUNNING})


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


# A tick that found the store gone past its outage budget comes back this much later, through the broker.
OUTAGE_RETRY = 5.0


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
    decide what the rollout does next). A store that does not answer past the outage budget does not
    fail the rollout: the host holds where it is and the tick comes back later."""
    try:
        _tick(store, runtime, scheduler, rollout_id, host, token, owner)
    except StoreUnavailable:
        # The reason was said when the outage began (PatientStore): say once that it outlasted the budget.
        first = getattr(store, "first_overrun", lambda _: True)(f"{rollout_id}/{host}")
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s: the store still does not answer, past its outage budget; %s holds where it is, "
            "looking again every %gs",
            rollout_id,
            host,
            OUTAGE_RETRY,
        )
        scheduler.send_tick(rollout_id, host, token, OUTAGE_RETRY)
    except Superseded as exc:
        log.warning("tick of %s/%s stops: %s; the worker that holds it goes on", rollout_id, host, exc)


def _tick(
    store: RolloutStore,
    runtime: Runtime,
    scheduler: Scheduler,
    rollout_id: str,
    host: str,
    token: str,
    owner: str,
) -> None:
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
    record_outage(store, rollout_id)
    status = store.host(rollout_id, host)
    delay: float | None = None
    try:
        if status.state not in TERMINAL or (status.progress.rollback and status.state is HostState.SUCCEEDED):
            spec = rollout.spec
            adapters = runtime.adapters(spec)
            watch.notice_new_instance(store, rollout, adapters.lb, status.progress)
            pipeline = HostPipeline(
                spec,
                spec.hosts[host],
                adapters,
                StoreJournal(store, rollout_id, owner, token),
                controls=Gate(
                    store, spec, adapters.lb, hypervisor_down=lambda h: hypervisor_down(adapters, h)
                ),
                rollout_created=rollout.created_at,
            )
            _, progress, delay = pipeline.advance(status.state, status.progress)
            follow_host(store, rollout_id, progress)
    except (StoreUnavailable, Superseded):
        raise  # not the rollout's failure: see tick()
    except Exception as exc:  # a bug: stop loudly, naming where the host stands
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
        with contextlib.suppress(StoreUnavailable):  # the lease runs out by itself
            store.release_host(rollout_id, host, owner)
    if delay is not None:
        enqueue(store, scheduler, rollout_id, host, delay)
        return
    host_done(store, scheduler, rollout_id, runtime)


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
                f"or `orchestrator reject {rollout_id} --as NAME --reason WHY` "
                f"(after {spec.approval_timeout:g}s: {spec.on_approval_timeout})",
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
