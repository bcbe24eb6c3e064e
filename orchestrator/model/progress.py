"""What a host has done inside its current state: the record the pipeline keeps between ticks.

Persisted with the host's state after every decision, as versioned JSON. This module is the only code
that reads its stored keys: everyone else uses the fields. A record written by a newer orchestrator
is refused rather than half-read; keys this version does not know are dropped. A new field with a
default needs no new version: an older record lacks it (the default), an older reader drops it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from orchestrator.errors import StateError

VERSION = 1


@dataclass
class Progress:
    entered: bool = False  # the state's entry action (drain, maint, ready) was done
    since: float = 0.0  # wall clock when the current state was entered
    step_index: int = 0
    successes: int = 0
    reverted: bool = False
    snapshot: str = ""  # name of the snapshot taken for this rollout, once it exists
    error: str = ""  # why the host failed, for the summary
    journal_id: int = 0
    work: float = 0.0  # seconds of the current step's own work (adapter calls and required waits)
    detail: str = ""
    running_step: int = -1  # set, durably, before an update command runs; cleared when it ended
    run_id: str = ""  # names this start of the running command's exit-status file on the host
    blocked: str = ""  # why the host cannot go on right now (load balancer or hypervisor unreachable)
    blocked_by: str = ""  # the PauseCause value of what blocks it
    blocked_since: float = 0.0
    host_started: float = 0.0  # when the host left pending (its deadline counts from here)
    rollback: bool = False  # this host, already updated, is being rolled back with the whole rollout
    user_sessions: int = -1  # last count from the session probe
    last_probe: float = 0.0
    last_warn: float = 0.0
    postponed: int = 0
    outcome: str = ""  # "skip" or "postpone": how a drain that would not end was settled
    capacity_since: float = 0.0  # when the host began waiting for capacity
    next_due: float = 0.0  # when the next look was asked for: lateness beyond it is the orchestrator's own
    held_by: str = ""  # a PauseCause value while the gate holds the host for one; "" otherwise
    held_why: str = ""  # the gate's words for why it holds the host
    passed_gate: bool = False  # the gate let the host start in this tick
    lb_instance: str = ""  # the load balancer process this host's last tick saw (Instance.identity)
    lb_pid: int = 0  # and its pid, for the record
    older_lb_until: float = 0.0  # clock by which every HAProxy process older than the drain has stopped

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        if not data:
            return cls()
        version = data.get("version", 1)  # records from before versions existed are version 1
        if not isinstance(version, int) or version > VERSION:
            raise StateError(
                f"a host's progress was written by a newer orchestrator (version {version}, this one "
                f"reads up to {VERSION}); run the newer version"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # Named changes the coordinator makes between the pipeline's own.
    def for_rollback(self) -> Progress:
        """This host, already updated, goes back through the pipeline to its snapshot."""
        self.rollback = True
        self.reverted = False
        return self

    def postponed_host_restarts(self) -> bool:
        """A host postponed to the end of the rollout gets its second chance: True if it was one."""
        if self.outcome != "postpone":
            return False
        self.outcome = ""
        return True
