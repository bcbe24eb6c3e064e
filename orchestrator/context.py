"""The composition root: what one process of the orchestrator is made of, built once, by its entry
point (the CLI's command, a worker), from the settings.

    Settings -> Store (opened once: migrations run once) -> Runtime (adapters, connection pools)
             -> the Celery app configured for the broker (in memory without one) -> its scheduler
    The engine gets the store wrapped in PatientStore: it waits out an outage instead of failing.

Celery tasks run inside a process that built its context first and reach it through ``current()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.audit.signing import FileCheckpointer
from orchestrator.config import Settings, load_settings
from orchestrator.engine.rollout.outage import PatientStore
from orchestrator.engine.wiring import Runtime
from orchestrator.store.audit import AuditLog
from orchestrator.store.db import Store
from orchestrator.workflows.app import CeleryScheduler, configure


@dataclass
class Context:
    settings: Settings
    store: Store  # fails fast: what the CLI reads (an outage is one line, exit 3)
    runtime: Runtime
    scheduler: CeleryScheduler
    engine_store: PatientStore  # the same store for the engine: waits out an outage within its budget

    def store_opener(self) -> Callable[[], Store]:
        """A fresh store over the same database, for a reader that reopens after a failure and must
        answer quickly (metrics: a silent PostgreSQL gives store_up 0 within a scrape's time)."""
        url = self.settings.database_url
        return lambda: Store(url, quick=True)

    def close(self) -> None:
        self.runtime.close()
        self.store.engine.dispose()


def audit_log(settings: Settings) -> AuditLog:
    return AuditLog(
        FileCheckpointer(
            settings.audit_key_file,
            settings.audit_folder,
            settings.audit_origin,
            settings.audit_checkpoint_every,
        )
    )


_lock = threading.Lock()
_current: Context | None = None


def build(settings: Settings | None = None) -> Context:
    """This process's context, made on the first call (later calls with the same settings return it)."""
    global _current
    settings = settings or load_settings()
    with _lock:
        if _current is not None and _current.settings == settings:
            return _current
        app = configure(settings)
        store = Store(settings.database_url, audit=audit_log(settings))
        patient = PatientStore(store, budget=settings.store_outage_budget)
        _current = Context(settings, store, Runtime(), CeleryScheduler(app), patient)
        return _current


def current() -> Context:
    """The context this process built; a worker started without one builds it from the environment."""
    return _current or build()
