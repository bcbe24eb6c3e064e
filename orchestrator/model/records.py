"""What the store answers with: a rollout, a host's status, a journal row. Plain values, so that the
engine, the reports and the metrics read them without depending on the store itself."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.model.progress import Progress
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState, PauseCause, RolloutState


@dataclass(frozen=True)
class Rollout:
    id: str
    name: str
    pool: str
    state: RolloutState
    current_batch: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    reason: str
    spec: RolloutSpec
    pause_cause: PauseCause | None = None  # set while PAUSED


@dataclass(frozen=True)
class HostStatus:
    name: str
    batch: int
    state: HostState
    progress: Progress
    updated_at: float
    token: str = ""  # empty: no tick chain was ever started for this host


@dataclass(frozen=True)
class Step:
    id: int
    host: str
    step: str
    attempt: int
    started_at: float
    ended_at: float | None
    outcome: str
    detail: str
    work: float
    exit_code: int | None
    output_tail: str
    command_sha256: str | None = None  # what ran (secrets as tokens), for the change report
    output_sha256: str | None = None  # its whole output


@dataclass(frozen=True)
class Action:
    """An operator's action or an orchestrator's decision on a rollout, with who and why."""

    at: float
    action: str
    actor: str
    detail: str
    reason: str = ""
    batch: int | None = None  # an approval or a rejection: after this batch (1-based)
