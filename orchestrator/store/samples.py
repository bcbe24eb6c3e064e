"""Availability samples: what the pool's load balancer showed, once per slot, while a rollout ran.
Several workers may sample the same rollout: the slot is the key, so the first write of a slot wins
and the others are no-ops."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from orchestrator.store.db import Store
from orchestrator.store.schema import LbSampleRow

# The HAProxy `show stat` counters kept per server, in the order stored.
COUNTERS = ("http_5xx", "connection_errors", "response_errors", "retries", "redispatches")


@dataclass(frozen=True)
class Sample:
    at: float
    in_service: int
    servers: int
    sessions: int
    per_server: dict[str, list[int]]  # [in service 0/1, sessions, *COUNTERS]


def record_sample(store: Store, rollout_id: str, slot: int, sample: Sample) -> bool:
    """Keep the sample unless another worker already kept one for this slot."""
    try:
        with store.session() as s:
            if s.get(LbSampleRow, (rollout_id, slot)) is not None:
                return False
            s.add(
                LbSampleRow(
                    rollout_id=rollout_id,
                    slot=slot,
                    at=sample.at,
                    in_service=sample.in_service,
                    servers=sample.servers,
                    sessions=sample.sessions,
                    servers_json=json.dumps(sample.per_server, separators=(",", ":")),
                )
            )
    except IntegrityError:
        return False
    return True


def samples(store: Store, rollout_id: str) -> list[Sample]:
    with store.session() as s:
        rows = s.scalars(
            select(LbSampleRow).where(LbSampleRow.rollout_id == rollout_id).order_by(LbSampleRow.slot)
        )
        return [Sample(r.at, r.in_service, r.servers, r.sessions, json.loads(r.servers_json)) for r in rows]
