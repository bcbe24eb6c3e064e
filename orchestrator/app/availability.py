"""The availability figures of a rollout's window, from the load balancer's samples: the lowest
capacity against the floor, the time at full capacity, and the errors the load balancer counted,
in the whole window and while each host was out."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

from orchestrator.engine.rollout.capacity import capacity_floor
from orchestrator.model.records import Step
from orchestrator.model.spec import RolloutSpec
from orchestrator.store.samples import COUNTERS, Sample


def _increase(before: Sequence[int], after: Sequence[int]) -> list[int]:
    """How much each counter grew; a counter that went down was reset by a new HAProxy process (a
    reload or restart), so all of its new value is growth."""
    return [a - b if a >= b else a for b, a in zip(before, after, strict=False)]


class Growth:
    """The pool's error counters' growth summed once over consecutive samples, so that the growth
    within any window (the whole rollout, each host's time out) is one subtraction: a 1,000-host
    rollout's report asks for a thousand windows over the same samples."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.times = [s.at for s in samples]
        self.sums = [[0] * len(COUNTERS)]  # sums[i]: the growth from sample 0 to sample i
        for older, newer in itertools.pairwise(samples):
            step = [0] * len(COUNTERS)
            for server, row in newer.per_server.items():
                was = older.per_server.get(server)
                if was is None:
                    continue  # a server new in this sample: nothing to compare it with
                for i, grew in enumerate(_increase(was[2:], row[2:])):
                    step[i] += grew
            self.sums.append([a + b for a, b in zip(self.sums[-1], step, strict=True)])

    def between(self, start: float, end: float | None) -> dict[str, int]:
        """The growth between the first and the last sample taken in [start, end]."""
        first = bisect.bisect_left(self.times, start)
        last = (len(self.times) if end is None else bisect.bisect_right(self.times, end)) - 1
        if last <= first:
            return dict.fromkeys(COUNTERS, 0)
        grown = (b - a for a, b in zip(self.sums[first], self.sums[last], strict=True))
        return dict(zip(COUNTERS, grown, strict=True))


def errors_between(samples: Sequence[Sample], start: float, end: float | None) -> dict[str, int]:
    """The pool's error counters' growth between the samples taken in [start, end]."""
    return Growth(samples).between(start, end)


def availability(samples: Sequence[Sample], spec: RolloutSpec, steps: Sequence[Step]) -> dict[str, Any]:
    servers = max((s.servers for s in samples), default=len(spec.hosts))
    floor = capacity_floor(spec, servers)
    full = below = 0.0
    for older, newer in itertools.pairwise(samples):
        span = newer.at - older.at
        full += span if older.in_service >= older.servers else 0.0
        below += span if older.in_service < floor else 0.0
    interval = (samples[-1].at - samples[0].at) / (len(samples) - 1) if len(samples) > 1 else 0.0
    growth = Growth(samples)
    by_host: dict[str, list[Step]] = {}
    for step in steps:
        by_host.setdefault(step.host, []).append(step)
    per_host = []
    for host in spec.hosts:
        mine = by_host.get(host)
        if not mine:
            continue
        out_from, out_to = mine[0].started_at, mine[-1].ended_at
        per_host.append(
            {
                "host": host,
                "out_from": out_from,
                "out_to": out_to,
                "lb_errors": growth.between(out_from, out_to),
            }
        )
    return {
        "interval": round(interval, 3),
        "samples": len(samples),
        "servers": servers,
        "floor": floor,
        "lowest_in_service": min((s.in_service for s in samples), default=None),
        "seconds_observed": round(samples[-1].at - samples[0].at, 3) if samples else 0.0,
        "seconds_at_full_capacity": round(full, 3),
        "seconds_below_floor": round(below, 3),
        "lb_errors": growth.between(float("-inf"), None),
        "per_host": per_host,
        "series": [[s.at, s.in_service, s.sessions] for s in samples],
    }
