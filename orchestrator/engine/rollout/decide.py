"""What the rollout does next, decided from its state and its hosts' states alone: pure, table-tested.

The failure budget: failed hosts are tolerated while both limits hold (count, and percentage of the
pool); once a failure is beyond them, `on_failure` decides: halt (stop; the failed hosts were already
reverted), rollback_all (revert every host this rollout updated, newest first, then stop), continue
(the budget was its licence to go on; beyond it, halt). The default budget is zero failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.model.plan import percent
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import FAILURES, TERMINAL, HostState, RolloutState


@dataclass(frozen=True)
class HostView:
    name: str
    batch: int
    position: int
    state: HostState
    error: str = ""


@dataclass(frozen=True)
class KeepWaiting:
    pass


@dataclass(frozen=True)
class StartBatch:
    index: int
    hosts: list[str]


@dataclass(frozen=True)
class AwaitApproval:
    done_batch: int  # 0-based index of the batch just finished
    next_batch: int


@dataclass(frozen=True)
class RollBackHost:
    host: str


@dataclass(frozen=True)
class Finish:
    state: RolloutState
    reason: str

    @property
    def succeeded(self) -> bool:
        return self.state is RolloutState.SUCCEEDED


RolloutDecision = KeepWaiting | StartBatch | AwaitApproval | RollBackHost | Finish


def within_budget(spec: RolloutSpec, failures: int, total: int) -> bool:
    budget = spec.failure_budget
    return failures <= budget.count and failures <= math.floor(percent(budget.percent) * total / 100)


def _failure_text(hosts: list[HostView]) -> str:
    failed = [h for h in hosts if h.state in FAILURES]
    parts = [f"{h.name} {h.state.value}: {h.error}".rstrip(": ") for h in failed]
    out = [h.name for h in failed if h.state is HostState.FAILED_OUT]
    text = "; ".join(parts)
    return f"{', '.join(out)} OUT OF THE POOL, needs a human; {text}" if out else text


def next_step(
    spec: RolloutSpec, state: RolloutState, current_batch: int, hosts: list[HostView]
) -> RolloutDecision:
    in_flight = any(h.state not in TERMINAL and h.state is not HostState.PENDING for h in hosts)
    batch_pending = any(h.state is HostState.PENDING and h.batch == current_batch for h in hosts)
    if in_flight or (batch_pending and state is not RolloutState.ABORTING):
        return KeepWaiting()  # someone is in flight, or the current batch has hosts still to start
    if state is RolloutState.ABORTING:
        return Finish(RolloutState.ABORTED, _summary("aborted", hosts))
    if state is RolloutState.ROLLING_BACK:
        return _rolling_back(hosts)
    failures = sum(h.state in FAILURES for h in hosts)
    if failures and not within_budget(spec, failures, len(hosts)):
        budget = spec.failure_budget
        reason = f"{failures} failed (budget {budget.count}, {budget.percent}): {_failure_text(hosts)}"
        if spec.on_failure == "rollback_all":
            return _rolling_back(hosts) if _to_roll_back(hosts) else Finish(RolloutState.ROLLED_BACK, reason)
        return Finish(RolloutState.HALTED, f"halted: {reason}")
    last = max(h.batch for h in hosts)
    if current_batch >= last:
        if failures:
            return Finish(
                RolloutState.PARTIAL,
                f"{_summary('done', hosts)}; within the failure budget: {_failure_text(hosts)}",
            )
        skipped = [h.name for h in hosts if h.state is HostState.SKIPPED]
        if skipped:  # user sessions that would not end: those servers still run the old version
            return Finish(
                RolloutState.PARTIAL, f"{_summary('done', hosts)}; not updated: {', '.join(skipped)}"
            )
        count = sum(h.state is HostState.SUCCEEDED for h in hosts)
        return Finish(RolloutState.SUCCEEDED, f"{count} host{'' if count == 1 else 's'} updated")
    if current_batch + 1 in spec.approve_after:
        return AwaitApproval(current_batch, current_batch + 1)
    return StartBatch(
        current_batch + 1,
        [
            h.name
            for h in sorted(hosts, key=lambda h: h.position)
            if h.batch == current_batch + 1 and h.state is HostState.PENDING
        ],
    )


def _to_roll_back(hosts: list[HostView]) -> list[HostView]:
    """Hosts this rollout updated, newest first (the reverse of the order they were updated in)."""
    return sorted((h for h in hosts if h.state is HostState.SUCCEEDED), key=lambda h: -h.position)


def _rolling_back(hosts: list[HostView]) -> RolloutDecision:
    todo = _to_roll_back(hosts)
    if todo:
        return RollBackHost(todo[0].name)
    failed = [h for h in hosts if h.error]
    why = f"; failures: {_failure_text(failed)}" if failed else ""
    return Finish(RolloutState.ROLLED_BACK, _summary("rolled back", hosts) + why)


def _summary(what: str, hosts: list[HostView]) -> str:
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h.state.value] = counts.get(h.state.value, 0) + 1
    return f"{what}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
