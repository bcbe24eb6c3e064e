"""Workers: a real one (`orchestrator worker`) or one inside the CLI process when no broker is set."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from orchestrator.config import Settings
from orchestrator.workflows.app import configure


class InProcessWorker:
    """Same tasks, same code path as a real worker, over the in-memory broker, in a thread."""

    def __init__(self, settings: Settings) -> None:
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

    def __enter__(self) -> InProcessWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
        self._thread.join(timeout=10)


def run_worker(settings: Settings, *, concurrency: int | None = None, loglevel: str = "INFO") -> None:
    app = configure(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
