"""Start a rollout and follow it to its end: what `orchestrator run` and the demo both do."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from orchestrator.config import Settings, load_settings
from orchestrator.engine.wiring import runtime
from orchestrator.inputs import preflight
from orchestrator.model.spec import RolloutSpec
from orchestrator.report import watch
from orchestrator.store.db import HostStatus, Rollout, Step, Store
from orchestrator.workflows.app import configure
from orchestrator.workflows.worker import InProcessWorker


def execute(
    spec: RolloutSpec, settings: Settings | None = None, emit: Callable[[str], None] = print
) -> tuple[Rollout, list[HostStatus], list[Step]]:
    """Preflight, store, hand to the workers (in-process when no broker is set), watch until done."""
    settings = settings or load_settings()
    for line in preflight(spec, runtime()):
        emit(f"  preflight {line}")
    store = Store(settings.database_url)
    store.create_rollout(spec)
    worker: AbstractContextManager[object] = (
        InProcessWorker(settings) if settings.in_process else nullcontext()
    )
    with worker:
        configure(settings)
        from orchestrator.workflows.tasks import start_rollout

        start_rollout.delay(spec.rollout_id)
        where = "in-process worker" if settings.in_process else f"broker {safe_url(settings.broker_url)}"
        emit(f"rollout {spec.rollout_id}: {spec.name} on pool {spec.pool} ({where})")
        final = watch(store, spec.rollout_id, emit)
    return final, store.hosts(spec.rollout_id), store.steps(spec.rollout_id)


def safe_url(url: str | None) -> str:
    """A broker URL without its password, for printing."""
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
