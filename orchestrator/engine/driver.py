"""Runs a rollout over the store: starts it, advances one host per tick, moves batch to batch.

Independent of Celery: a Scheduler says how the next tick is delivered (a Celery task with a
countdown in production, a direct call in unit tests).
"""

from __future__ import annotations

import logging
from typing import Protocol

from orchestrator.engine.pipeline import HostPipeline, Progress
from orchestrator.engine.rollout import Finish, KeepWaiting, StartBatch, after_host
from orchestrator.engine.wiring import Runtime
from orchestrator.model.states import ROLLOUT_DONE, TERMINAL, HostState, RolloutState
from orchestrator.store.db import Store

log = logging.getLogger(__name__)


class Scheduler(Protocol):
    def tick(self, rollout_id: str, host: str, delay: float = 0.0) -> None: ...


class StoreJournal:
    def __init__(self, store: Store, rollout_id: str) -> None:
        self.store = store
        self.rollout_id = rollout_id

    def save(self, host: str, state: HostState, progress: Progress) -> None:
        self.store.save_host(self.rollout_id, host, state, progress.to_json())

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


def start(store: Store, scheduler: Scheduler, rollout_id: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state is not RolloutState.PENDING:
        return  # a duplicate delivery of the start message
    store.set_rollout_state(rollout_id, RolloutState.RUNNING)
    for host in rollout.spec.batches[0]:
        scheduler.tick(rollout_id, host)


def tick(store: Store, runtime: Runtime, scheduler: Scheduler, rollout_id: str, host: str) -> None:
    rollout = store.rollout(rollout_id)
    if rollout is None or rollout.state in ROLLOUT_DONE:
        return
    status = store.host(rollout_id, host)
    if status.state not in TERMINAL:
        spec = rollout.spec
        pipeline = HostPipeline(
            spec, spec.hosts[host], runtime.adapters(spec), StoreJournal(store, rollout_id)
        )
        try:
            _, _, delay = pipeline.advance(status.state, Progress.from_json(status.progress))
        except Exception as exc:  # a bug or a dead store: stop loudly, naming where the host stands
            log.exception("tick of %s/%s crashed", rollout_id, host)
            now = store.host(rollout_id, host)
            store.set_rollout_state(
                rollout_id,
                RolloutState.FAILED,
                f"internal error on {host} in state {now.state.value}: {exc!r}",
            )
            return
        if delay is not None:
            scheduler.tick(rollout_id, host, delay)
            return
    _host_done(store, scheduler, rollout_id)


def _host_done(store: Store, scheduler: Scheduler, rollout_id: str) -> None:
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
            scheduler.tick(rollout_id, host)
        return
    assert isinstance(decision, Finish)
    for h in hosts:
        if h.state is HostState.PENDING:
            store.save_host(rollout_id, h.name, HostState.SKIPPED, h.progress)
    final = RolloutState.SUCCEEDED if decision.succeeded else RolloutState.HALTED
    store.set_rollout_state(rollout_id, final, decision.reason)
