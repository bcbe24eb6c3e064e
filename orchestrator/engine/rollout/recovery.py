"""What a crash left behind, found and picked up: hosts whose tick chain died, a batch that finished
while nobody was there to start the next, an approval that timed out. Used by `orchestrator resume`
and by the reconciler thread every worker runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from orchestrator.engine.rollout import operations, watch
from orchestrator.engine.rollout.claims import owner_alive
from orchestrator.engine.rollout.coordinator import enqueue, host_done, start, start_hosts
from orchestrator.engine.rollout.ports import RolloutStore, Scheduler
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import StoreUnavailable
from orchestrator.model.records import Rollout
from orchestrator.model.states import ROLLOUT_DONE, TERMINAL, HostState, RolloutState

log = logging.getLogger(__name__)

# Called once per reconciler round (due schedules: the caller's business, handed in).
RoundHook = Callable[[], None]


def _approval_timeouts(store: RolloutStore, scheduler: Scheduler, rollout: Rollout, now: float) -> list[str]:
    asked = [at for at, action, _, _ in store.actions(rollout.id) if action == "approval_requested"]
    if not asked or now - asked[-1] < rollout.spec.approval_timeout:
        return []
    decide = operations.approve if rollout.spec.on_approval_timeout == "approve" else operations.reject
    why = (
        f"no decision within approval_timeout {rollout.spec.approval_timeout:g}s "
        f"(on_approval_timeout: {rollout.spec.on_approval_timeout})"
    )
    return [
        f"approval timed out after {rollout.spec.approval_timeout:g}s: "
        f"{decide(store, scheduler, rollout.id, 'orchestrator', why)}"
    ]


def restart(
    store: RolloutStore,
    scheduler: Scheduler,
    rollout_id: str,
    *,
    actor: str,
    quiet_for: float = 0.0,
    clock: Callable[[], float] = time.time,
    runtime: Runtime | None = None,
) -> list[str]:
    """Restart the tick chains of every host in flight (those nobody holds), and the batch logic.
    Returns what was done, one line each. ``runtime`` reaches the hypervisors: a rollout it ends as
    succeeded has its snapshots deleted by retention, as the last host's own tick would have."""
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        return []
    done: list[str] = []
    if rollout.state is RolloutState.PENDING:
        start(store, scheduler, rollout_id)
        return [f"{rollout_id}: started"]
    for host in store.stalled_hosts(rollout_id, quiet_for=quiet_for, alive=owner_alive):
        state = store.host(rollout_id, host).state
        enqueue(store, scheduler, rollout_id, host)
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
        done += _approval_timeouts(store, scheduler, rollout, clock())
    elif not any(
        h.state not in TERMINAL and h.state is not HostState.PENDING for h in store.hosts(rollout_id)
    ):
        host_done(store, scheduler, rollout_id, runtime)  # a crash between a host's end and what follows
        after = store.rollout(rollout_id)
        if after is not None and (after.state, after.current_batch) != (rollout.state, rollout.current_batch):
            done.append(f"moved on: {after.state.value}, batch {after.current_batch + 1}")
    for line in done:
        store.record_action(rollout_id, "resume", actor, line)
    return done


def reconcile(
    store: RolloutStore,
    scheduler: Scheduler,
    *,
    quiet_for: float = 30.0,
    clock: Callable[[], float] = time.time,
    runtime: Runtime | None = None,
) -> list[str]:
    """Find rollouts that say running but make no progress, and restart them."""
    lines: list[str] = []
    for rollout in store.active_rollouts():
        if rollout.state is RolloutState.PENDING and clock() - rollout.created_at < quiet_for:
            continue  # its start message is probably on its way
        lines += [
            f"{rollout.id} {line}"
            for line in restart(
                store,
                scheduler,
                rollout.id,
                actor="reconciler",
                quiet_for=quiet_for,
                clock=clock,
                runtime=runtime,
            )
        ]
    return lines


def reconcile_forever(
    store: RolloutStore,
    scheduler: Scheduler,
    *,
    every: float = 5.0,
    quiet_for: float = 30.0,
    stop: threading.Event | None = None,
    each_round: RoundHook | None = None,
    loadbalancers: watch.LoadBalancers | None = None,
    runtime: Runtime | None = None,
) -> None:
    """The reconciler loop run by every worker (a thread); any number of them may run at once.
    Each round first guards the load balancer states of every active rollout (with ``loadbalancers``),
    then restarts what stalled; ``each_round`` runs after it (the workers start due schedules there)."""
    event = stop or threading.Event()
    while not event.wait(every):
        if loadbalancers is not None:
            try:
                watch.guard(store, loadbalancers)
            except StoreUnavailable as exc:
                log.warning("load balancer guard skipped: %s", exc)
            except Exception:  # a bug: say it; the reconciling below still runs
                log.exception("load balancer guard failed")
        try:
            for line in reconcile(store, scheduler, quiet_for=quiet_for, runtime=runtime):
                log.warning("reconciler: %s", line)
            if each_round is not None:
                each_round()
        except StoreUnavailable as exc:  # past the outage budget: said once by the store; try again
            log.warning("reconciler round skipped: %s", exc)
        except Exception:  # a bug: say it, and let the next round try again
            log.exception("reconciler round failed")
