"""What the rollout does when a host finishes: pure, decided from the hosts' states alone."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import FAILURES, TERMINAL, HostState


@dataclass(frozen=True)
class KeepWaiting:
    pass


@dataclass(frozen=True)
class StartBatch:
    index: int
    hosts: list[str]


@dataclass(frozen=True)
class Finish:
    succeeded: bool
    reason: str


RolloutDecision = KeepWaiting | StartBatch | Finish


def after_host(
    spec: RolloutSpec, current_batch: int, states: dict[str, HostState], errors: dict[str, str]
) -> RolloutDecision:
    batch = spec.batches[current_batch]
    if not all(states[h] in TERMINAL for h in batch):
        return KeepWaiting()
    failed = [h for h in batch if states[h] in FAILURES]
    if failed:
        # on_failure: halt. The failed hosts are already reverted (or loudly left out); stop here.
        parts = [f"{h} {states[h].value}: {errors.get(h, '')}".rstrip(": ") for h in failed]
        out = [h for h in failed if states[h] is HostState.FAILED_OUT]
        reason = "; ".join(parts)
        if out:
            reason = f"{', '.join(out)} OUT OF THE POOL, needs a human; " + reason
        return Finish(False, f"halted: {reason}")
    if current_batch + 1 >= len(spec.batches):
        count = sum(len(b) for b in spec.batches)
        return Finish(True, f"{count} host{'' if count == 1 else 's'} updated")
    return StartBatch(current_batch + 1, spec.batches[current_batch + 1])
