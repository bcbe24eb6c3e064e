"""What the host pipeline needs from outside itself, each as a small Protocol: the rollout's decisions
(Controls), the SSH connections (RemotePool), where its progress and journal go (HostStore), and the
adapters of one rollout. The pipeline never imports the store: the coordinator hands it these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.adapters.checks.base import Check
from orchestrator.adapters.hypervisors.base import Snapshots
from orchestrator.adapters.loadbalancers.base import LoadBalancer
from orchestrator.adapters.remote.base import Remote
from orchestrator.engine.host.decisions import GateDecision, Proceed
from orchestrator.engine.secrets import NoSecrets, SecretValues
from orchestrator.model.progress import Progress
from orchestrator.model.spec import CheckSpec, HostSpec
from orchestrator.model.states import HostState


class Controls(Protocol):
    """The rollout-level decisions a host needs from outside itself."""

    def gate(self, host: HostSpec, rollback: bool) -> GateDecision:
        """May this host be drained now? Proceed also claims its place (capacity) atomically."""

    def aborting(self) -> bool: ...

    def postpone(self, host: HostSpec) -> None:
        """Move the host to the end of the rollout."""


class NoControls:
    """Every host may start; nothing aborts. For unit tests and single-host tools."""

    def gate(self, host: HostSpec, rollback: bool) -> GateDecision:
        return Proceed()

    def aborting(self) -> bool:
        return False

    def postpone(self, host: HostSpec) -> None:
        pass


class RemotePool(Protocol):
    def get(self, host: HostSpec) -> Remote: ...
    def discard(self, host: HostSpec) -> None: ...


class HostStore(Protocol):
    """Where one host's state, progress and journal go, and its claim on the host."""

    def save(self, host: str, state: HostState, progress: Progress) -> None: ...
    def hold(self, host: str, seconds: float) -> None:
        """Keep this host claimed for ``seconds`` more (a long command is about to run)."""

    def record_action(self, host: str, action: str, detail: str) -> None:
        """A row in the rollout's action log (e.g. a load balancer state this host re-asserted)."""

    def record_event(self, host: str, kind: str, **fields: object) -> None:
        """A record in the audit log only: a load balancer state set, a snapshot taken or reverted,
        a check's result with what it measured (the change report's evidence)."""

    def step_started(self, host: str, step: str, detail: str, *, command: str = "") -> int: ...
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


@dataclass
class Adapters:
    """The real systems one rollout talks to, built once per process (engine.wiring)."""

    lb: LoadBalancer
    snapshots: Callable[[HostSpec], Snapshots | None]
    remotes: RemotePool
    check: Callable[[CheckSpec, HostSpec], Check]
    secrets: SecretValues = field(default_factory=NoSecrets)
