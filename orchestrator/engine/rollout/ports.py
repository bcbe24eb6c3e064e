"""What the rollout's coordinator, gate and recovery need from the store and from the transport of
ticks. Protocols: the concrete Store satisfies them, and a test can hand in anything that does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from orchestrator.model.progress import Progress
from orchestrator.model.records import HostStatus, Rollout, Step
from orchestrator.model.states import HostState, PauseCause, RolloutState


class Scheduler(Protocol):
    """How the next tick of a host is delivered: a Celery task with a countdown, or a direct call."""

    def send_tick(self, rollout_id: str, host: str, token: str, delay: float = 0.0) -> None: ...


class RolloutStore(Protocol):
    def rollout(self, rollout_id: str) -> Rollout | None: ...
    def active_rollouts(self) -> list[Rollout]: ...
    def transition_rollout(
        self,
        rollout_id: str,
        to: RolloutState,
        *,
        reason: str | None = None,
        cause: PauseCause | None = None,
        only_from: frozenset[RolloutState] | None = None,
        only_cause: PauseCause | None = None,
    ) -> bool: ...
    def finish_rollout(self, rollout_id: str, state: RolloutState, reason: str) -> bool: ...
    def claim_next_batch(self, rollout_id: str, finished_batch: int) -> bool: ...
    def reacquire_pool(self, rollout_id: str, pool: str) -> None: ...
    def audit_event(self, rollout_id: str, kind: str, **fields: object) -> None: ...
    def record_action(
        self,
        rollout_id: str,
        action: str,
        actor: str,
        detail: str = "",
        reason: str = "",
        *,
        batch: int | None = None,
    ) -> None: ...
    def actions(self, rollout_id: str) -> list[tuple[float, str, str, str]]: ...
    def hosts(self, rollout_id: str) -> list[HostStatus]: ...
    def host(self, rollout_id: str, name: str) -> HostStatus: ...
    def save_host(
        self, rollout_id: str, name: str, state: HostState, progress: Progress, *, token: str | None = None
    ) -> None: ...
    def claim_start(
        self, rollout_id: str, name: str, to: HostState, decide: Callable[[set[str]], bool]
    ) -> bool: ...
    def move_host_to_batch(self, rollout_id: str, name: str, batch: int) -> None: ...
    def skip_pending(self, rollout_id: str) -> list[str]: ...
    def new_token(self, rollout_id: str, name: str) -> str: ...
    def claim_host(
        self,
        rollout_id: str,
        name: str,
        token: str,
        owner: str,
        ttl: float,
        *,
        alive: Callable[[str], bool] = ...,
    ) -> str: ...
    def extend_lease(self, rollout_id: str, name: str, owner: str, seconds: float) -> None: ...
    def release_host(self, rollout_id: str, name: str, owner: str) -> None: ...
    def stalled_hosts(
        self, rollout_id: str, *, quiet_for: float, alive: Callable[[str], bool] = ...
    ) -> list[str]: ...
    def step_started(
        self, rollout_id: str, host: str, step: str, detail: str = "", *, command: str = ""
    ) -> int: ...
    def step_ended(
        self,
        step_id: int,
        outcome: str,
        detail: str,
        *,
        work: float,
        exit_code: int | None = None,
        output_tail: str = "",
        output_sha256: str = "",
    ) -> None: ...
    def steps(self, rollout_id: str, *, after: int = 0) -> list[Step]: ...
