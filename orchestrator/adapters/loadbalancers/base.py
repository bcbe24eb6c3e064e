"""What the engine needs from a load balancer. Waiting is the engine's job: adapters answer at once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class AdminState(StrEnum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True)
class ServerState:
    backend: str
    server: str
    admin: AdminState
    status: str  # as the load balancer reports it, e.g. "UP", "UP 1/2", "DOWN", "DRAIN", "MAINT"
    sessions: int  # current sessions (HAProxy scur)
    # Error counters since the load balancer's process started: 5xx responses, connection errors,
    # response errors, retries, redispatches (HAProxy hrsp_5xx, econ, eresp, wretr, wredis).
    errors: tuple[int, ...] = ()

    @property
    def up_after_check(self) -> bool:
        """In service and confirmed by a passed health check (not HAProxy's optimistic "UP 1/2")."""
        return self.admin is AdminState.READY and self.status == "UP"

    @property
    def in_service(self) -> bool:
        """Receiving new traffic right now."""
        return self.admin is AdminState.READY and self.status.startswith("UP")


@dataclass(frozen=True)
class Instance:
    """Which load balancer process answers. A reload or a restart starts a new process, and a new
    process may have forgotten every admin state set at runtime: the engine compares ``identity``
    between ticks to notice one."""

    identity: str  # equal only for the same process
    pid: int
    uptime: float  # seconds since that process started
    # Seconds until every older process (one this process replaced, still serving the connections it
    # kept, with the server states it had) has stopped at the latest; 0 when they have; None when
    # nothing bounds them (no `hard-stop-after`, or no configuration to read it from).
    older_gone_in: float | None = None


class LoadBalancer(Protocol):
    def drain(self, server: str) -> None: ...
    def maint(self, server: str) -> None: ...
    def ready(self, server: str) -> None: ...
    def state(self, server: str) -> ServerState: ...
    def servers(self) -> list[ServerState]: ...
    def instance(self) -> Instance: ...
