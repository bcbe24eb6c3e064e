"""What every state handler works with: one host of one rollout, its adapters and ports, the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.host.ports import Adapters, Controls, HostStore, NoControls
from orchestrator.model.progress import Progress
from orchestrator.model.spec import HostSpec, RolloutSpec
from orchestrator.retry import RetryPolicy


def poll_delay(elapsed: float) -> float:
    """Poll fast at first (most drains end within a request's time), then back off to 1 s."""
    return min(1.0, max(0.02, elapsed / 10))


@dataclass
class HostRun:
    spec: RolloutSpec
    host: HostSpec
    adapters: Adapters
    store: HostStore
    controls: Controls = field(default_factory=NoControls)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], float] = time.time
    rollout_created: float = 0.0  # by the clock: a load balancer process younger than this was reloaded

    def call(self, progress: Progress, fn: Callable[[], Any]) -> Any:
        """One adapter call through the retry policy; its time counts as the step's own work."""
        started = time.monotonic()
        try:
            return self.retry.call(fn)
        finally:
            progress.work += time.monotonic() - started

    def set_lb(self, progress: Progress, state: str) -> None:
        """Set this host's server to ``state`` (drain, maint, ready) and record it in the audit log."""
        server = self.host.lb_server
        setter = {
            "drain": self.adapters.lb.drain,
            "maint": self.adapters.lb.maint,
            "ready": self.adapters.lb.ready,
        }
        self.call(progress, lambda: setter[state](server))
        self.store.record_event(self.host.name, "lb.set", server=server, state=state)

    def elapsed(self, progress: Progress) -> float:
        return self.clock() - progress.since
