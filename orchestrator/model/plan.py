"""Batch planning and the capacity floor: pure, table-tested.

The floor is the larger of `min_healthy` and (pool size - `max_unavailable`); percentages of the pool:
`min_healthy` rounds up, `max_unavailable` rounds down but allows at least one server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.model.spec import RolloutSpec


def percent(value: int | str) -> int:
    """The number in a validated percentage ("25%" -> 25); a bare number is a percentage already."""
    return int(str(value).rstrip("%"))


def batch_size(size: int | str, pool_size: int) -> int:
    """A size from the playbook ("25%" or 3) as a number of hosts, at least one."""
    if isinstance(size, str):
        return max(1, math.ceil(percent(size) * pool_size / 100))
    return size


def plan_batches(hosts: Sequence[str], sizes: Sequence[int | str]) -> list[list[str]]:
    """Split ``hosts`` (in rollout order) into batches; the last size repeats until all are placed.

    >>> plan_batches(["a", "b", "c", "d", "e"], [1, "50%"])
    [['a'], ['b', 'c', 'd'], ['e']]
    """
    if not sizes:
        raise ValueError("no batch sizes")
    batches: list[list[str]] = []
    remaining = list(hosts)
    index = 0
    while remaining:
        n = batch_size(sizes[min(index, len(sizes) - 1)], len(hosts))
        batches.append(remaining[:n])
        remaining = remaining[n:]
        index += 1
    return batches


def _count(value: int | str, pool_size: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    exact = percent(value) * pool_size / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def capacity_floor_of(
    min_healthy: int | str | None, max_unavailable: int | str | None, pool_size: int
) -> int:
    floors = [0]
    if min_healthy is not None:
        floors.append(_count(min_healthy, pool_size, round_up=True))
    if max_unavailable is not None:
        floors.append(pool_size - max(1, _count(max_unavailable, pool_size, round_up=False)))
    return max(floors)


def expected_host_seconds(spec: RolloutSpec, past: Sequence[float]) -> float:
    """How long a host is expected to take: the slowest host of this rollout so far, with a margin;
    before any, a bound from the playbook's own timeouts (drain, update steps, stabilisation, 1 min)."""
    if past:
        return max(past) * 1.5
    first = next(iter(spec.hosts.values()), None)
    steps = sum(s.timeout for s in first.steps) if first else 0.0
    return spec.drain_timeout + steps + spec.stabilize_timeout + 60
