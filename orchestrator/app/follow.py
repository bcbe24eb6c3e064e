"""Following a rollout to its end, as `run` and `resume` do: every step as it ends, every pause and
its lifting; and picking up a rollout whose workers are gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from orchestrator.display import printable
from orchestrator.engine.rollout import operations, recovery
from orchestrator.engine.rollout.ports import RolloutStore, Scheduler
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import InputError, StoreUnavailable
from orchestrator.model.records import HostStatus, Rollout, Step
from orchestrator.model.states import ROLLOUT_DONE, TERMINAL, HostState, RolloutState

Emit = Callable[[str], None]


class RolloutReader(Protocol):
    def rollout(self, rollout_id: str) -> Rollout | None: ...
    def rollouts(self, *, limit: int = 50) -> list[Rollout]: ...
    def hosts(self, rollout_id: str) -> list[HostStatus]: ...
    def steps(self, rollout_id: str, *, after: int = 0) -> list[Step]: ...


@dataclass(frozen=True)
class Outcome:
    rollout: Rollout
    hosts: list[HostStatus]
    steps: list[Step]
    interrupted: bool = False  # the operator stopped following: the rollout is paused, not over


class Interruption(Protocol):
    def requested(self) -> bool: ...


def step_line(step: Step) -> str:
    took = (step.ended_at or time.time()) - step.started_at
    mark = {"ok": "ok", "failed": "FAILED"}.get(step.outcome, step.outcome)
    return printable(f"  {step.host:<10} {step.step:<12} {mark:<6} {took:7.2f}s  {step.detail}")


def follow(
    store: RolloutReader,
    rollout_id: str,
    emit: Emit,
    *,
    interval: float = 0.1,
    interruption: Interruption | None = None,
    on_interrupt: Callable[[], str] | None = None,
    on_store_back: Callable[[float], None] | None = None,
) -> Outcome:
    """Print each step as it ends, and each change of the rollout's state, until it is over. A store
    that stops answering is one line when it goes and one when it is back: the rollout holds meanwhile.
    Once ``interruption`` is requested, ``on_interrupt`` (pausing the rollout) runs and its words are
    printed; the follow ends as soon as no host is in flight any more. ``on_store_back`` hears how long
    an outage that this follow saw lasted, once the store answers again (to journal it)."""
    shown: set[int] = set()
    interrupted = False
    last_state: tuple[RolloutState, str] | None = None
    down_since: float | None = None
    while True:
        try:
            rollout = store.rollout(rollout_id)
            steps = store.steps(rollout_id)
        except StoreUnavailable as exc:
            if down_since is None:
                down_since = time.monotonic()
                emit(printable(f"  store unavailable: {exc}; waiting: every host holds where it is"))
            time.sleep(max(interval, 0.5))
            continue
        if down_since is not None:
            lasted = time.monotonic() - down_since
            emit(f"  the store answers again after {lasted:.1f}s")
            down_since = None
            if on_store_back is not None:
                on_store_back(lasted)
        assert rollout is not None
        for step in steps:
            if step.ended_at is not None and step.id not in shown:
                shown.add(step.id)
                emit(step_line(step))
        if (rollout.state, rollout.reason) != last_state and rollout.state is RolloutState.PAUSED:
            emit(printable(f"  PAUSED: {rollout.reason}"))
        elif last_state and last_state[0] is RolloutState.PAUSED and rollout.state is RolloutState.RUNNING:
            emit("  running again")
        last_state = (rollout.state, rollout.reason)
        if rollout.state in ROLLOUT_DONE:
            return Outcome(rollout, store.hosts(rollout_id), steps)
        if interruption is not None and interruption.requested():
            if not interrupted:
                interrupted = True
                emit(printable(f"  {on_interrupt() if on_interrupt else 'stopping'}"))
            hosts = store.hosts(rollout_id)
            if not any(h.state not in TERMINAL and h.state is not HostState.PENDING for h in hosts):
                return Outcome(rollout, hosts, steps, interrupted=True)
        time.sleep(interval)


def known(store: RolloutReader, rollout_id: str) -> Rollout:
    rollout = store.rollout(rollout_id)
    if rollout is None:
        latest = ", ".join(r.id for r in store.rollouts(limit=5)) or "none"
        raise InputError(
            "ROLLOUT",
            f"no rollout {rollout_id!r} in the store",
            f"one of the latest: {latest} (see `orchestrator history`)",
        )
    return rollout


def pick_up(
    store: RolloutStore,
    scheduler: Scheduler,
    rollout_id: str,
    actor: str,
    runtime: Runtime | None = None,
    reason: str = "",
) -> list[str]:
    """`orchestrator resume`: lift a pause (recorded with who did it and why) and restart what stalled."""
    operations.unpause(store, rollout_id, actor, reason)
    return recovery.restart(store, scheduler, rollout_id, actor=actor, runtime=runtime)
