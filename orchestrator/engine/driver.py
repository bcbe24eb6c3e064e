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
import time
from typing import Protocol

from orchestrator.engine.pipeline import HostPipeline, Progress
from orchestrator.engine.rollout import Finish, KeepWaiting, StartBatch, after_host
from orchestrator.engine.wiring import Runtime
from orchestrator.model.states import ROLLOUT_DONE, TERMINAL, HostState, RolloutState
from orchestrator.store.db import Store, now

log = logging.getLogger(__name__)

LEASE = 60.0  # seconds a tick may act on a host before its claim must be renewed
OWNER = f"{socket.gethostname()}/{os.getpid()}"


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
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def schedule(store: Store, scheduler: Scheduler, rollout_id: str, host: str, delay: float = 0.0) -> None:
    """Start (or restart) the host's one tick chain."""
    scheduler.tick(rollout_id, host, store.new_token(rollout_id, host), delay)


def start(store: Store, scheduler: Scheduler, rollout_id: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state is not RolloutState.PENDING:
        return  # a duplicate delivery of the start message
    store.set_rollout_state(rollout_id, RolloutState.RUNNING)
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
        if status.state not in TERMINAL:
            spec = rollout.spec
            pipeline = HostPipeline(
                spec, spec.hosts[host], runtime.adapters(spec), StoreJournal(store, rollout_id, owner)
            )
            _, progress, delay = pipeline.advance(status.state, Progress.from_json(status.progress))
            _note_blocked(store, rollout_id, host, progress)
    except Exception as exc:  # a bug or a dead store: stop loudly, naming where the host stands
        log.exception("tick of %s/%s crashed", rollout_id, host)
        current = store.host(rollout_id, host)
        store.set_rollout_state(
            rollout_id,
            RolloutState.FAILED,
            f"internal error on {host} in state {current.state.value}: {exc!r}",
        )
        return
    finally:
        store.release_host(rollout_id, host, owner)
    if delay is not None:
        schedule(store, scheduler, rollout_id, host, delay)
        return
    host_done(store, scheduler, rollout_id)


def _note_blocked(store: Store, rollout_id: str, host: str, progress: Progress) -> None:
    """A host blocked by an unreachable load balancer pauses the rollout, saying where each host is."""
    rollout = store.rollout(rollout_id)
    if rollout is None:
        return
    if progress.blocked and rollout.state is RolloutState.RUNNING:
        where = ", ".join(f"{h.name} {h.state.value}" for h in store.hosts(rollout_id))
        store.set_rollout_state(
            rollout_id, RolloutState.PAUSED, f"{progress.blocked}; retrying. Hosts: {where}"
        )
    elif (
        not progress.blocked
        and rollout.state is RolloutState.PAUSED
        and rollout.reason.startswith("load balancer unreachable")
    ):
        store.set_rollout_state(rollout_id, RolloutState.RUNNING)


def host_done(store: Store, scheduler: Scheduler, rollout_id: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        return
    hosts = store.hosts(rollout_id)
    states = {h.name: h.state for h in hosts}
    errors = {h.name: str(h.progress.get("error", "")) for h in hosts}
    decision = after_host(rollout.spec, rollout.current_batch, states, errors)
    if isinstance(decision, KeepWaiting):
        return
    # Several hosts of a batch may finish at once in different workers: one claim wins.
    if not store.claim_next_batch(rollout_id, rollout.current_batch):
        return
    if isinstance(decision, StartBatch):
        for host in decision.hosts:
            schedule(store, scheduler, rollout_id, host)
        return
    assert isinstance(decision, Finish)
    for h in hosts:
        if h.state is HostState.PENDING:
            store.save_host(rollout_id, h.name, HostState.SKIPPED, h.progress)
    final = RolloutState.SUCCEEDED if decision.succeeded else RolloutState.HALTED
    store.set_rollout_state(rollout_id, final, decision.reason)


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
    current = [h for h in store.hosts(rollout_id) if h.batch == rollout.current_batch]
    if current and all(h.state in TERMINAL for h in current):
        host_done(store, scheduler, rollout_id)  # a crash between a host's end and the next batch
        done.append(f"batch {rollout.current_batch + 1} complete: moved on")
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
    store: Store, scheduler: Scheduler, *, every: float = 5.0, quiet_for: float = 30.0, stop: object = None
) -> None:
    """The reconciler loop run by every worker (a thread); any number of them may run at once."""
    import threading

    event = stop if isinstance(stop, threading.Event) else threading.Event()
    while not event.wait(every):
        try:
            for line in reconcile(store, scheduler, quiet_for=quiet_for):
                log.warning("reconciler: %s", line)
        except Exception:  # the store may be down for a moment; the next round tries again
            log.exception("reconciler round failed")
        time.sleep(0)
