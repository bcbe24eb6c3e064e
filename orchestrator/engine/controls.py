"""The gate before each drain: capacity, pause, maintenance window, rollout deadline.

Capacity: before a server is drained, the pool's live state is read from the load balancer. The
servers in service that would remain (not counting this one, nor the ones this rollout already took
out, and with every server that is down for reasons of its own already missing) must stay at or above
the floor: the larger of `min_healthy` and (pool size - `max_unavailable`). Percentages of the pool:
`min_healthy` rounds up, `max_unavailable` rounds down but allows at least one server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrator.adapters.loadbalancers.base import LoadBalancer, ServerState
from orchestrator.engine.pipeline import GateDecision, Hold, Proceed, Refuse
from orchestrator.model.plan import capacity_floor_of, expected_host_seconds
from orchestrator.model.spec import HostSpec, RolloutSpec
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.db import Store


def capacity_floor(spec: RolloutSpec, pool_size: int) -> int:
    return capacity_floor_of(spec.min_healthy, spec.max_unavailable, pool_size)


def may_drain(servers: list[ServerState], server: str, ours_out: set[str], floor: int) -> tuple[bool, str]:
    """(allowed, what the pool looks like). ``ours_out``: servers this rollout already took out."""
    in_service = {s.server for s in servers if s.in_service} - ours_out
    remaining = len(in_service - {server})
    out = sorted(s.server for s in servers if not s.in_service)
    picture = f"{len(in_service)} of {len(servers)} servers in service, floor {floor}"
    if out:
        picture += f"; out of service: {', '.join(out)}"
    return remaining >= floor, picture


class StoreControls:
    """Controls for one rollout, answered from the store and the live load balancer."""

    def __init__(
        self, store: Store, spec: RolloutSpec, lb: LoadBalancer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.spec = spec
        self.lb = lb
        self.clock = clock

    def aborting(self) -> bool:
        rollout = self.store.rollout(self.spec.rollout_id)
        return rollout is not None and rollout.state is RolloutState.ABORTING

    def postpone(self, host: HostSpec) -> None:
        self.store.move_host_to_batch(self.spec.rollout_id, host.name, len(self.spec.batches))

    def gate(self, host: HostSpec, rollback: bool) -> GateDecision:
        rollout = self.store.rollout(self.spec.rollout_id)
        assert rollout is not None
        if not rollback:
            waiting = self._rollout_gates(
                rollout.state, rollout.pause_cause, rollout.reason, rollout.started_at
            )
            if waiting is not None:
                return waiting
        return self._claim(host, rollback)

    def _rollout_gates(
        self, state: RolloutState, cause: PauseCause | None, reason: str, started_at: float | None
    ) -> GateDecision | None:
        if state is RolloutState.PAUSED and cause is not PauseCause.WINDOW:
            return Hold(f"the rollout to be resumed ({reason})", 1.0)
        if state in (RolloutState.ABORTING, RolloutState.ROLLING_BACK, RolloutState.AWAITING_APPROVAL):
            return Hold(f"the rollout ({state.value})", 1.0)
        deadline = self.spec.deadlines.rollout
        if deadline and started_at and self.clock() - started_at > deadline:
            return Refuse(f"the rollout deadline ({deadline:g}s) passed before this host could start")
        if self.spec.window is not None:
            return self._window()
        return None

    def _window(self) -> GateDecision | None:
        """Hold with the cause WINDOW when the window has less time left than a host needs; the
        coordinator pauses the rollout for it (and resumes it when a host passes). Writes nothing."""
        from orchestrator.model.windows import parse_window

        assert self.spec.window is not None
        window = parse_window(self.spec.window.timezone, self.spec.window.allowed)
        at = datetime.fromtimestamp(self.clock(), UTC)
        need = expected_host_seconds(self.spec, self._past_durations())
        left = window.time_left(at).total_seconds()
        if left >= need:
            return None
        opens = window.next_open(at) if left <= 0 else window.next_open(window.closes_at(at) or at)
        why = (
            f"maintenance window: {left:.0f}s left, a host needs ~{need:.0f}s"
            if left > 0
            else "maintenance window closed"
        )
        text = f"{why}; next opens {opens:%Y-%m-%d %H:%M} UTC ({window.describe()})"
        # Look again at least every minute: a countdown message held for hours would outlive the broker's
        # consumer timeout.
        return Hold(text, max(1.0, min(60.0, (opens - at).total_seconds())), cause=PauseCause.WINDOW)

    def _past_durations(self) -> list[float]:
        spans: dict[str, list[float]] = {}
        for step in self.store.steps(self.spec.rollout_id):
            if step.ended_at is not None:
                spans.setdefault(step.host, []).extend([step.started_at, step.ended_at])
        done = {h.name for h in self.store.hosts(self.spec.rollout_id) if h.state is HostState.SUCCEEDED}
        return [max(v) - min(v) for k, v in spans.items() if k in done]

    def _claim(self, host: HostSpec, rollback: bool) -> GateDecision:
        picture = ""

        def decide(ours_out: set[str]) -> bool:
            nonlocal picture
            if self.spec.max_unavailable is None and self.spec.min_healthy is None:
                return True
            servers = self.lb.servers()
            out_servers = {self.spec.hosts[h].lb_server for h in ours_out if h in self.spec.hosts}
            floor = capacity_floor(self.spec, len(servers))
            allowed, picture = may_drain(servers, host.lb_server, out_servers, floor)
            return allowed

        if self.store.claim_start(self.spec.rollout_id, host.name, HostState.DRAINING, decide):
            return Proceed()
        return Hold(f"capacity ({picture})", 1.0, capacity=True)
