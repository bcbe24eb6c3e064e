"""The pool's capacity as one picture: servers in service against the floor, and which are out. Used by
the gate (may this server be drained now?), `status` and the metrics, so all three agree."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.model.plan import capacity_floor_of
from orchestrator.model.spec import RolloutSpec


def capacity_floor(spec: RolloutSpec, pool_size: int) -> int:
    return capacity_floor_of(spec.min_healthy, spec.max_unavailable, pool_size)


@dataclass(frozen=True)
class Capacity:
    servers: int
    serving: frozenset[str]  # receiving traffic, not counting the servers this rollout already took out
    floor: int
    out: tuple[str, ...]  # "name STATUS" of each server out of service, for people

    @property
    def in_service(self) -> int:
        return len(self.serving)

    def describe(self) -> str:
        text = f"{self.in_service} of {self.servers} servers in service, floor {self.floor}"
        return text + (f"; out of service: {', '.join(self.out)}" if self.out else "")

    @property
    def below_floor(self) -> bool:
        return self.in_service < max(self.floor, 1)


def picture(servers: list[ServerState], floor: int, ours_out: Collection[str] = ()) -> Capacity:
    """``ours_out``: load balancer servers this rollout already took out (counted out even if the load
    balancer still shows them draining)."""
    serving = {s.server for s in servers if s.in_service} - set(ours_out)
    out = tuple(f"{s.server} {s.status}" for s in servers if not s.in_service)
    return Capacity(len(servers), frozenset(serving), floor, out)


def pool_picture(servers: list[ServerState], spec: RolloutSpec, ours_out: Collection[str] = ()) -> Capacity:
    """The picture against the floor this rollout's strategy sets for a pool of that size."""
    return picture(servers, capacity_floor(spec, len(servers)), ours_out)


def may_drain(capacity: Capacity, server: str) -> bool:
    """Would the pool stay at or above its floor without ``server``?"""
    return len(capacity.serving - {server}) >= capacity.floor
