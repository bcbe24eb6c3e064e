"""Start a rollout (or resume one) and follow it to its end: what `run`, `resume` and the demo do."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from orchestrator.config import Settings, load_settings
from orchestrator.engine.wiring import runtime
from orchestrator.errors import InputError
from orchestrator.inputs import preflight
from orchestrator.model.spec import RolloutSpec
from orchestrator.report import watch
from orchestrator.store.db import HostStatus, Rollout, Step, Store
from orchestrator.workflows.app import configure
from orchestrator.workflows.worker import InProcessWorker

Outcome = tuple[Rollout, list[HostStatus], list[Step]]


def workers(settings: Settings) -> AbstractContextManager[object]:
    """An in-process worker when no broker is configured; otherwise the broker's workers do the work."""
    if settings.in_process:
        return InProcessWorker(settings)
    configure(settings)
    return nullcontext()


def where(settings: Settings) -> str:
    return "in-process worker" if settings.in_process else f"broker {safe_url(settings.broker_url)}"


def execute(
    spec: RolloutSpec, settings: Settings | None = None, emit: Callable[[str], None] = print
) -> Outcome:
    """Preflight, store (taking the pool's lock), hand to the workers, watch until done."""
    settings = settings or load_settings()
    for line in preflight(spec, runtime()):
        emit(f"  preflight {line}")
    store = Store(settings.database_url)
    store.create_rollout(spec, stale_after=settings.lock_stale_after)
    with workers(settings):
        from orchestrator.workflows.tasks import start_rollout

        start_rollout.delay(spec.rollout_id)
        emit(f"rollout {spec.rollout_id}: {spec.name} on pool {spec.pool} ({where(settings)})")
        final = watch(store, spec.rollout_id, emit)
    return final, store.hosts(spec.rollout_id), store.steps(spec.rollout_id)


def start_only(playbook: Path, inventory: Path, hosts: tuple[str, ...], settings: Settings) -> str:
    """Validate, preflight, store and enqueue a rollout without following it: what a schedule does when
    it comes due (inside a worker, whose Celery app is already configured)."""
    from orchestrator.inputs import load_spec, new_rollout_id

    spec = load_spec(playbook, inventory, rollout_id=new_rollout_id(), hosts=hosts)
    preflight(spec, runtime())
    Store(settings.database_url).create_rollout(spec, stale_after=settings.lock_stale_after)
    from orchestrator.workflows.tasks import start_rollout

    start_rollout.delay(spec.rollout_id)
    return spec.rollout_id


def resume(rollout_id: str, settings: Settings, actor: str, emit: Callable[[str], None] = print) -> Outcome:
    """Pick up a rollout that stopped making progress (its CLI or worker died, or it was paused)."""
    from orchestrator.engine import driver

    store = Store(settings.database_url)
    rollout = store.rollout(rollout_id)
    if rollout is None:
        known = ", ".join(r.id for r in store.rollouts(limit=5)) or "none"
        raise InputError(
            "ROLLOUT",
            f"no rollout {rollout_id!r} in the store",
            f"one of the latest: {known} (see `orchestrator history`)",
        )
    with workers(settings):
        from orchestrator.workflows.tasks import CeleryScheduler

        driver.unpause(store, rollout_id, actor)  # recorded with who did it
        for line in driver.resume(store, CeleryScheduler(), rollout_id, actor=actor):
            emit(f"  resume {line}")
        emit(f"rollout {rollout_id}: {rollout.name} on pool {rollout.pool} ({where(settings)})")
        final = watch(store, rollout_id, emit)
    return final, store.hosts(rollout_id), store.steps(rollout_id)


def safe_url(url: str | None) -> str:
    """A broker URL without its password, for printing."""
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
