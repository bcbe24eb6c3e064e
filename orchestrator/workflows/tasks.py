"""Thin tasks: ids in, the driver does the work, nothing out."""

from __future__ import annotations

import functools

from orchestrator.engine import driver
from orchestrator.engine.wiring import runtime
from orchestrator.store.db import Store
from orchestrator.workflows.app import app


@functools.cache
def _store(url: str) -> Store:
    return Store(url)


def store() -> Store:
    return _store(str(app.conf.orch_database_url))


class CeleryScheduler:
    def tick(self, rollout_id: str, host: str, token: str, delay: float = 0.0) -> None:
        host_tick.apply_async((rollout_id, host, token), countdown=delay if delay > 0 else None)


@app.task(name="orchestrator.start_rollout")  # type: ignore[untyped-decorator]
def start_rollout(rollout_id: str) -> None:
    driver.start(store(), CeleryScheduler(), rollout_id)


@app.task(name="orchestrator.host_tick")  # type: ignore[untyped-decorator]
def host_tick(rollout_id: str, host: str, token: str) -> None:
    driver.tick(store(), runtime(), CeleryScheduler(), rollout_id, host, token)
