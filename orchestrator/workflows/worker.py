"""Workers: a real one (`orchestrator worker`) or one inside the CLI process when no broker is set.

Both run the reconciler in a thread: every few seconds it looks for rollouts that say running but whose
hosts make no progress (their worker died, a message was lost) and restarts those hosts' tick chains,
then starts the schedules that came due (each claimed by exactly one worker).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from orchestrator.app.follow import Emit, Outcome, follow, known, pick_up
from orchestrator.app.sampling import sample_forever
from orchestrator.app.submit import preflight, start_from_files, submit
from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.display import printable
from orchestrator.engine.rollout import operations
from orchestrator.engine.rollout.recovery import reconcile_forever
from orchestrator.errors import RolloutRefused, StoreUnavailable
from orchestrator.model.spec import RolloutSpec
from orchestrator.redact import install_log_redaction
from orchestrator.schedule import due_rollouts
from orchestrator.store.db import safe_url
from orchestrator.store.schedules import Schedule
from orchestrator.workflows.interrupts import Interrupts, LeftAtOnce, left_out

log = logging.getLogger(__name__)


def _start_sampler(ctx: Context, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=sample_forever,
        name="lb-sampler",
        daemon=True,
        args=(ctx.store, ctx.runtime.loadbalancer, ctx.settings.lb_sample_every, stop),
    )
    thread.start()
    return thread


def _start_reconciler(ctx: Context, stop: threading.Event) -> threading.Thread:
    settings = ctx.settings
    _start_sampler(ctx, stop)

    def start(due: Schedule) -> str:
        return start_from_files(
            ctx.store, ctx.runtime, ctx.scheduler, due, stale_after=settings.lock_stale_after
        )

    def due_schedules() -> None:
        for row in due_rollouts(ctx.store, time.time(), start):
            log.warning("scheduler: schedule %s -> %s %s", row.id, row.state, row.rollout_id or row.detail)

    thread = threading.Thread(
        target=reconcile_forever,
        name="reconciler",
        daemon=True,
        kwargs={
            "store": ctx.engine_store,
            "scheduler": ctx.scheduler,
            "every": settings.reconcile_every,
            "quiet_for": settings.reconcile_after,
            "stop": stop,
            "each_round": due_schedules,
            "loadbalancers": ctx.runtime.loadbalancer,
            "runtime": ctx.runtime,
        },
    )
    thread.start()
    return thread


class InProcessWorker:
    """Same tasks, same code path as a real worker, over the in-memory broker, in a thread."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._controller: Any = ctx.scheduler.celery.WorkController(
            pool_cls="threads",
            concurrency=ctx.settings.worker_concurrency,
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname=f"inprocess-{os.getpid()}@{socket.gethostname()}",
        )
        self._thread = threading.Thread(target=self._controller.start, name="celery-worker", daemon=True)
        self._stop = threading.Event()

    def __enter__(self) -> InProcessWorker:
        self._thread.start()
        _start_reconciler(self.ctx, self._stop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._controller.stop()
        self._thread.join(timeout=10)


def workers(ctx: Context) -> AbstractContextManager[object]:
    """An in-process worker when no broker is configured; otherwise the broker's workers do the work."""
    return InProcessWorker(ctx) if ctx.settings.in_process else nullcontext()


def run_worker(ctx: Context, *, concurrency: int | None = None, loglevel: str = "INFO") -> None:
    install_log_redaction()  # Celery's handlers and every library's records included
    _start_reconciler(ctx, threading.Event())
    # Threads, not prefork: steps wait on I/O, and a worker that is killed takes all its work with it
    # (an orphaned prefork child could go on running a command its parent's lease no longer covers).
    # A node name per process: two workers on one machine would otherwise share `celery@HOST` and the
    # second would die on the broker's exclusive control queue.
    ctx.scheduler.celery.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency or ctx.settings.worker_concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            f"--hostname=orchestrator-{os.getpid()}@%h",
        ]
    )


def execute(ctx: Context, spec: RolloutSpec, emit: Emit) -> Outcome:
    """What `run` does: preflight, store the rollout (taking the pool's lock), hand it to the workers
    (this process's own without a broker), follow it to its end."""
    for line in preflight(spec, ctx.runtime):
        emit(f"  preflight {line}")
    with Interrupts(patient=ctx.settings.in_process) as interrupts, workers(ctx):
        submit(ctx.store, ctx.scheduler, spec, stale_after=ctx.settings.lock_stale_after)
        emit(printable(f"rollout {spec.rollout_id}: {spec.name} on pool {spec.pool} ({where(ctx.settings)})"))
        return _follow(ctx, spec.rollout_id, emit, interrupts)


def resume(ctx: Context, rollout_id: str, actor: str, emit: Emit, reason: str = "") -> Outcome:
    """What `resume` does: pick up a rollout whose workers are gone (or that was paused), follow it."""
    rollout = known(ctx.store, rollout_id)
    with Interrupts(patient=ctx.settings.in_process) as interrupts, workers(ctx):
        for line in pick_up(ctx.store, ctx.scheduler, rollout_id, actor, ctx.runtime, reason):
            emit(printable(f"  resume {line}"))
        emit(
            printable(f"rollout {rollout_id}: {rollout.name} on pool {rollout.pool} ({where(ctx.settings)})")
        )
        return _follow(ctx, rollout_id, emit, interrupts)


def _follow(ctx: Context, rollout_id: str, emit: Emit, interrupts: Interrupts) -> Outcome:
    """Follow to the end; on Ctrl-C, pause (this process is the worker) or just stop watching (workers
    elsewhere go on). A second Ctrl-C leaves at once, saying what is left out of the pool."""

    def pause_for_it() -> str:
        with contextlib.suppress(RolloutRefused):  # awaiting approval, aborting...: nothing starts anyway
            operations.pause(ctx.store, rollout_id, getpass.getuser(), "Ctrl-C on the process running it")
        return (
            "Ctrl-C: pausing; no new host starts, the hosts in flight finish and go back to the pool, then "
            "this process exits. Ctrl-C again to leave at once"
        )

    def journal_outage(lasted: float) -> None:
        # The engine journals the outages its ticks waited out; one that fell between its calls is
        # seen only here, and belongs in the journal all the same. A store gone again loses this line.
        with contextlib.suppress(StoreUnavailable):
            ctx.store.record_action(
                rollout_id,
                "store_outage",
                "orchestrator",
                f"the store did not answer `orchestrator run` for {lasted:.1f}s while it followed",
            )

    try:
        return follow(
            ctx.store,
            rollout_id,
            emit,
            interruption=interrupts,
            on_interrupt=pause_for_it,
            on_store_back=journal_outage,
        )
    except LeftAtOnce:
        if not ctx.settings.in_process:
            emit(
                f"  Ctrl-C: no longer following; rollout {rollout_id} goes on in the workers "
                f"(`orchestrator status {rollout_id}`, `orchestrator pause {rollout_id}`)"
            )
            raise
        emit(f"  Ctrl-C again: leaving now; rollout {rollout_id} is paused")
        for line in left_out(ctx.store.hosts(rollout_id), ctx.store.steps(rollout_id), rollout_id):
            emit(line)
        raise


def where(settings: Settings) -> str:
    return "in-process worker" if settings.in_process else f"broker {safe_url(settings.broker_url or '')}"
