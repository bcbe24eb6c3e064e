"""Workers: a real one (`orchestrator worker`) or one inside the CLI process when no broker is set.

Both run the reconciler in a thread: every few seconds it looks for rollouts that say running but whose
hosts make no progress (their worker died, a message was lost) and restarts those hosts' tick chains.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.engine.driver import reconcile_forever
from orchestrator.redact import install_log_redaction
from orchestrator.workflows.app import configure


def _start_reconciler(settings: Settings, stop: threading.Event) -> threading.Thread:
    from orchestrator.launch import start_only
    from orchestrator.workflows.tasks import CeleryScheduler, store

    def start(playbook: Path, inventory: Path, hosts: tuple[str, ...]) -> str:
        return start_only(playbook, inventory, hosts, settings)

    thread = threading.Thread(
        target=reconcile_forever,
        name="reconciler",
        daemon=True,
        kwargs={
            "store": store(),
            "scheduler": CeleryScheduler(),
            "every": settings.reconcile_every,
            "quiet_for": settings.reconcile_after,
            "stop": stop,
            "start": start,
        },
    )
    thread.start()
    return thread


class InProcessWorker:
    """Same tasks, same code path as a real worker, over the in-memory broker, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = configure(settings)
        self._controller: Any = self.app.WorkController(
            pool_cls="threads",
            concurrency=settings.worker_concurrency,
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
        _start_reconciler(self.settings, self._stop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._controller.stop()
        self._thread.join(timeout=10)


def run_worker(settings: Settings, *, concurrency: int | None = None, loglevel: str = "INFO") -> None:
    install_log_redaction()  # Celery's handlers and every library's records included
    app = configure(settings)
    _start_reconciler(settings, threading.Event())
    # Threads, not prefork: steps wait on I/O, and a worker that is killed takes all its work with it
    # (an orphaned prefork child could go on running a command its parent's lease no longer covers).
    # A node name per process: two workers on one machine would otherwise share `celery@HOST` and the
    # second would die on the broker's exclusive control queue.
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            f"--hostname=orchestrator-{os.getpid()}@%h",
        ]
    )
