"""Thin tasks: ids in, the coordinator does the work, nothing out."""

from __future__ import annotations

from orchestrator.context import current
from orchestrator.engine.rollout import coordinator
from orchestrator.workflows.app import app


@app.task(name="orchestrator.start_rollout")  # type: ignore[untyped-decorator]
def start_rollout(rollout_id: str) -> None:
    ctx = current()
    coordinator.start(ctx.engine_store, ctx.scheduler, rollout_id)


@app.task(name="orchestrator.host_tick")  # type: ignore[untyped-decorator]
def host_tick(rollout_id: str, host: str, token: str) -> None:
    ctx = current()
    coordinator.tick(ctx.engine_store, ctx.runtime, ctx.scheduler, rollout_id, host, token)
