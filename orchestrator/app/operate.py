"""An operator's action on a rollout, by name: what the CLI (and later an API) calls."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.engine.rollout import operations
from orchestrator.engine.rollout.ports import RolloutStore, Scheduler

Action = Callable[[RolloutStore, Scheduler | None, str, str, str], str]

ACTIONS: dict[str, Action] = {
    "pause": lambda store, _scheduler, rollout_id, actor, reason: operations.pause(
        store, rollout_id, actor, reason
    ),
    "abort": operations.abort,
    "rollback": operations.rollback,
    "approve": operations.approve,
    "reject": operations.reject,
}

# What stops or undoes a change is not recorded without its why.
NEEDS_REASON = frozenset({"abort", "rollback", "reject"})


def operate(
    store: RolloutStore, scheduler: Scheduler | None, action: str, rollout_id: str, actor: str, reason: str
) -> str:
    """Apply ``action``; with a scheduler it is carried out at once, without one the process running
    the rollout (its in-process worker's reconciler) carries it out within seconds."""
    return ACTIONS[action](store, scheduler, rollout_id, actor, reason)
