"""The gate before each drain: an operator's pause, the rollout's deadline, the maintenance window,
then capacity. It answers the host pipeline's question and writes nothing but the capacity claim;
when it holds a host for the window, the coordinator pauses the rollout (PauseCause.WINDOW).

Capacity: before a server is drained, the pool's live state is read from the load balancer. The
servers in service that would remain (not counting this one, nor the ones this rollout already took
out, and with every server that is down for reasons of its own already missing) must stay at or above
the floor: the larger of `min_healthy` and (pool size - `max_unavailable`). Percentages of the pool:
`min_healthy` rounds up, `max_unavailable` rounds down but allows at least one server. The check and
the claim are one transaction in the store, so two hosts of a batch never both take the last slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrator.adapters.loadbalancers.base import LoadBalancer
from orchestrator.engine.host.decisions import GateDecision, Hold, Proceed, Refuse
from orchestrator.engine.rollout.capacity import may_drain, pool_picture
from orchestrator.engine.rollout.ports import RolloutStore
from orchestrator.model.plan import expected_host_seconds
from orchestrator.model.records import Rollout
from orchestrator.model.spec import HostSpec, RolloutSpec
from orchestrator.model.states import HostState, PauseCause, RolloutState

HELD_BY_THE_ROLLOUT = frozenset(
    {RolloutState.ABORTING, RolloutState.ROLLING_BACK, RolloutState.AWAITING_APPROVAL}
)


class Gate:
    """The Controls of one rollout's hosts, answered from the store and the live load balancer."""

    def __init__(
        self,
        store: RolloutStore,
        spec: RolloutSpec,
        lb: LoadBalancer,
        *,
        clock: Callable[[], float] = time.time,
        hypervisor_down: Callable[[HostSpec], str | None] = lambda _host: None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.lb = lb
        self.clock = clock
        self.hypervisor_down = hypervisor_down  # why the host's hypervisor does not answer, or None

    def aborting(self) -> bool:
        rollout = self.store.rollout(self.spec.rollout_id)
        return rollout is not None and rollout.state is RolloutState.ABORTING

    def postpone(self, host: HostSpec) -> None:
        self.store.move_host_to_batch(self.spec.rollout_id, host.name, len(self.spec.batches))

    def gate(self, host: HostSpec, rollback: bool) -> GateDecision:
        rollout = self.store.rollout(self.spec.rollout_id)
        assert rollout is not None
        if not rollback:
            waiting = self._rollout_gates(rollout, host)
            if waiting is not None:
                return waiting
        return self._claim(host)

    def _rollout_gates(self, rollout: Rollout, host: HostSpec) -> GateDecision | None:
        if rollout.state is RolloutState.PAUSED and rollout.pause_cause is PauseCause.HYPERVISOR:
            why = self.hypervisor_down(host)  # a pause that lifts when the hypervisor answers again
            if why is not None:
                return Hold(f"the hypervisor ({why})", 10.0, cause=PauseCause.HYPERVISOR)
        elif rollout.state is RolloutState.PAUSED and rollout.pause_cause is not PauseCause.WINDOW:
            return Hold(f"the rollout to be resumed ({rollout.reason})", 1.0)
        if rollout.state in HELD_BY_THE_ROLLOUT:
            return Hold(f"the rollout ({rollout.state.value})", 1.0)
        deadline = self.spec.deadlines.rollout
        if deadline and rollout.started_at and self.clock() - rollout.started_at > deadline:
            return Refuse(f"the rollout deadline ({deadline:g}s) passed before this host could start")
        if self.spec.window is not None:
            return self._window()
        return None

    def _window(self) -> GateDecision | None:
        """Hold with the cause WINDOW when the window has less time left than a host needs."""
        assert self.spec.window is not None
        window = self.spec.window.parsed()
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

    def _claim(self, host: HostSpec) -> GateDecision:
        seen = ""

        def decide(ours_out: set[str]) -> bool:
            nonlocal seen
            if self.spec.max_unavailable is None and self.spec.min_healthy is None:
                return True
            servers = self.lb.servers()
            taken = {self.spec.hosts[h].lb_server for h in ours_out if h in self.spec.hosts}
            capacity = pool_picture(servers, self.spec, taken)
            seen = capacity.describe()
            return may_drain(capacity, host.lb_server)

        if self.store.claim_start(self.spec.rollout_id, host.name, HostState.DRAINING, decide):
            return Proceed()
        return Hold(f"capacity ({seen})", 1.0, capacity=True)
