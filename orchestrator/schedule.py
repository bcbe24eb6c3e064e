"""Durable scheduling: start the rollouts whose time has come, and read the times operators give.

``due_rollouts`` runs in every reconciler round; any number of workers may call it at once, since each
schedule is claimed by one of them only (orchestrator.store.schedules.claim_due).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrator.errors import OrchestratorError
from orchestrator.model.windows import to_utc, zone
from orchestrator.procs import OWNER
from orchestrator.store.db import Store
from orchestrator.store.schedules import Schedule, claim_due, get_schedule, mark_failed, mark_started

log = logging.getLogger(__name__)

# A due schedule -> the new rollout's id. Validates, preflights, stores, enqueues; raises InputError
# or RolloutRefused when the rollout may not start.
StartRollout = Callable[[Schedule], str]


def due_rollouts(store: Store, now: float, start: StartRollout, *, owner: str = OWNER) -> list[Schedule]:
    """Claim the schedules due by ``now`` (UTC epoch seconds) and start each; return them as recorded
    (``started`` with the rollout id, or ``failed`` with why). Never raises for a start that fails."""
    results: list[Schedule] = []
    for schedule in claim_due(store, now, owner=owner):
        try:
            rollout_id = start(schedule)
        except OrchestratorError as exc:  # a bad file since scheduling, preflight refused, pool busy
            log.warning("schedule %s: could not start %s: %s", schedule.id, schedule.playbook, exc)
            mark_failed(store, schedule.id, f"not started: {exc}")
        except Exception as exc:
            # Claimed already: left 'started' without a rollout it would look fine and never run.
            log.exception("schedule %s: starting %s failed", schedule.id, schedule.playbook)
            mark_failed(store, schedule.id, f"not started: {type(exc).__name__}: {exc}")
        else:
            log.info("schedule %s: started rollout %s", schedule.id, rollout_id)
            mark_started(store, schedule.id, rollout_id)
        recorded = get_schedule(store, schedule.id)
        results.append(recorded or schedule)
    return results


def parse_at(text: str, timezone: str | None) -> datetime:
    """An operator's time as an aware UTC datetime: ISO 8601 with a zone (``2026-12-05T01:30+01:00``,
    ``...Z``), or ``YYYY-MM-DD HH:MM`` read in ``timezone`` (UTC when None; DST as in model.windows:
    a time that does not exist is the instant after the gap, one that happens twice its first
    occurrence). ValueError("what; expected") otherwise."""
    where = timezone or "UTC"
    expected = (
        f"ISO 8601 with a zone such as 2026-12-05T01:30+01:00 or 2026-12-05T00:30Z, "
        f"or 'YYYY-MM-DD HH:MM' in {where}"
    )
    cleaned = text.strip()
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"{text!r} is not a date and time; {expected}") from None
    if len(cleaned) <= 10:  # a date alone would silently mean midnight
        raise ValueError(f"{text!r} has no time of day; {expected}")
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    return to_utc(parsed, zone(where))


def in_zone(epoch: float, timezone: str) -> str:
    """``2026-12-05 01:30 CET`` for showing an instant in a window's zone."""
    return datetime.fromtimestamp(epoch, zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def in_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
