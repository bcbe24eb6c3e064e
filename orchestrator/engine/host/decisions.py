"""What a state's handler decides, and what the gate before a drain decides. Values, never actions."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.model.states import HostState, PauseCause


@dataclass(frozen=True)
class Goto:
    state: HostState
    detail: str = ""
    outcome: str = "ok"


@dataclass(frozen=True)
class Wait:
    delay: float
    work: float = 0.0  # how much of the delay the step itself requires (vs. polling slack)


@dataclass(frozen=True)
class Fail:
    reason: str
    exit_code: int | None = None
    output_tail: str = ""
    output_sha256: str = ""  # of the command's whole output (the audit log's evidence)


@dataclass(frozen=True)
class Next:
    """Same state, progress changed (e.g. one update step done): persist, then carry on at once."""

    detail: str = ""
    exit_code: int | None = None
    output_tail: str = ""
    outcome: str = "ok"
    output_sha256: str = ""


Decision = Goto | Wait | Fail | Next


@dataclass(frozen=True)
class Proceed:
    pass


@dataclass(frozen=True)
class Hold:
    reason: str  # what the host waits for: capacity, the window, a pause
    delay: float
    capacity: bool = False  # waiting for capacity is bounded by the strategy's capacity_timeout
    cause: PauseCause | None = None  # the rollout should pause for this (the window); None: just wait


@dataclass(frozen=True)
class Refuse:
    reason: str  # the host will not start (a deadline passed, capacity never came back)


GateDecision = Proceed | Hold | Refuse
