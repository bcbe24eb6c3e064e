"""A tick's claim on its host: the lease that keeps a second worker from acting on the same host at
once (a lease held by a dead process of this machine is free), and the pipeline's HostStore over the
rollout store, which re-takes the claim after a store outage before it writes anything."""

from __future__ import annotations

import socket

from orchestrator.engine.rollout.outage import PatientStore
from orchestrator.engine.rollout.ports import RolloutStore
from orchestrator.errors import Superseded
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState
from orchestrator.procs import alive

LEASE = 60.0  # seconds a tick may act on a host before its claim must be renewed


def owner_alive(owner: str) -> bool:
    """False only when the owner is a process of this machine that is gone (or a zombie)."""
    host, _, pid = owner.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's worker: only its lease's expiry can tell
    return alive(int(pid))


class ClaimLost(Superseded):
    """After a store outage, another worker holds the host (its lease ran out meanwhile): stop acting."""


class StoreJournal:
    """The host pipeline's HostStore, over the rollout store, for one host's tick (its token and owner).
    After a store outage it re-takes its claim before writing anything: the lease may have run out and
    another worker taken the host over, and then this tick must stop."""

    def __init__(self, store: RolloutStore, rollout_id: str, owner: str, token: str = "") -> None:
        self.store = store
        self.rollout_id = rollout_id
        self.owner = owner
        self.token = token
        self._outages = store.outages if isinstance(store, PatientStore) else 0

    def _still_ours(self, host: str) -> None:
        if not isinstance(self.store, PatientStore) or self.store.outages == self._outages:
            return
        self._outages = self.store.outages
        claimed = self.store.claim_host(
            self.rollout_id, host, self.token, self.owner, LEASE, alive=owner_alive
        )
        if claimed != "claimed":
            raise ClaimLost(f"{host}: {claimed} after a store outage")

    def save(self, host: str, state: HostState, progress: Progress) -> None:
        self._still_ours(host)
        # Only while this tick's token is the host's: a tick superseded midway (its lease ran out in a
        # long call and a new chain started) must not write over the newer one.
        self.store.save_host(self.rollout_id, host, state, progress, token=self.token or None)

    def hold(self, host: str, seconds: float) -> None:
        self._still_ours(host)
        self.store.extend_lease(self.rollout_id, host, self.owner, seconds)

    def record_action(self, host: str, action: str, detail: str) -> None:
        self.store.record_action(self.rollout_id, action, "orchestrator", f"{host}: {detail}")

    def record_event(self, host: str, kind: str, **fields: object) -> None:
        self.store.audit_event(self.rollout_id, kind, host=host, **fields)

    def step_started(self, host: str, step: str, detail: str, *, command: str = "") -> int:
        self._still_ours(host)
        return self.store.step_started(self.rollout_id, host, step, detail, command=command)

    def step_ended(
        self,
        step_id: int,
        outcome: str,
        detail: str,
        *,
        work: float,
        exit_code: int | None = None,
        output_tail: str = "",
        output_sha256: str = "",
    ) -> None:
        self.store.step_ended(
            step_id,
            outcome,
            detail,
            work=work,
            exit_code=exit_code,
            output_tail=output_tail,
            output_sha256=output_sha256,
        )
