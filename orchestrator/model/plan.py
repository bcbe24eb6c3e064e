"""Batch planning: pure, table-tested."""

from __future__ import annotations

import math
from collections.abc import Sequence


def batch_size(size: int | str, pool_size: int) -> int:
    """A size from the playbook ("25%" or 3) as a number of hosts, at least one."""
    if isinstance(size, str):
        return max(1, math.ceil(int(size.rstrip("%")) * pool_size / 100))
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
