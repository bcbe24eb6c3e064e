"""A rollout fully resolved: every template rendered, every path absolute, every host's steps listed.

This is what gets stored and handed to workers as JSON: a worker needs neither the playbook nor the
inventory file, and what ran is exactly what `plan` showed. Secrets appear only as tokens (see
``model.secrets``): their sources are listed in ``secrets``, their values never are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from orchestrator.model.base import Strict
from orchestrator.model.inventory import CommandSnapshotConfig, HAProxyConfig, LibvirtConfig, NoSnapshots
from orchestrator.model.playbook import Deadlines, FailureBudget, Sessions, WindowSpec
from orchestrator.model.secrets import SecretSpec


class SSHSpec(Strict):
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: float


class StepSpec(Strict):
    kind: Literal["run", "upload"]
    label: str  # what it does, for progress lines and the journal (secrets as tokens)
    timeout: float
    command: str = ""  # run
    src: Path | None = None  # upload
    dest: str = ""
    mode: int | None = None


class CheckSpec(Strict):
    kind: Literal["http", "tcp", "command"]
    label: str
    timeout: float
    url: str = ""
    status: int = 200
    contains: str | None = None
    json_fields: dict[str, Any] | None = None
    headers: dict[str, str] = {}  # may hold secret tokens
    address: str = ""
    port: int = 0
    command: str = ""


class HostSpec(Strict):
    name: str
    address: str
    domain: str
    lb_server: str
    ssh: SSHSpec
    steps: list[StepSpec]
    checks: list[CheckSpec]
    revert_checks: list[CheckSpec]
    snapshot_name: str = ""  # rendered per host: a name template may use host.*
    snapshot_commands: dict[str, str] = {}  # command snapshots: create / revert / delete, rendered
    session_probe: str = ""  # rendered drain.sessions.probe
    session_warn: str = ""  # rendered drain.sessions.warn


class Document(Strict):
    """A file the rollout was made from, as read: its digest, and its text with secrets masked."""

    path: str
    sha256: str
    text: str


class ChangeRequest(Strict):
    """Who asked for the change, when, why, under which ticket, and from which files (the report's
    request section)."""

    requested_by: str
    requested_at: float
    change_ticket: str | None = None
    reason: str | None = None
    playbook: Document
    inventory: Document


class RolloutSpec(Strict):
    rollout_id: str
    name: str
    pool: str
    playbook_path: Path
    inventory_path: Path
    batches: list[list[str]]
    drain_timeout: float
    drain_on_timeout: Literal["fail", "force"]
    snapshot_enabled: bool
    snapshot_memory: bool
    snapshot_retention: Literal["delete_on_success", "keep"]
    snapshot_timeout: float
    stabilize_interval: float
    stabilize_successes: int
    stabilize_timeout: float
    on_failure: Literal["halt", "rollback_all", "continue"]
    failure_budget: FailureBudget = FailureBudget()
    max_unavailable: int | str | None = None
    min_healthy: int | str | None = None
    capacity_timeout: float = 600.0
    approve_after: list[int] = []
    approval_timeout: float = 14400.0
    on_approval_timeout: Literal["reject", "approve"] = "reject"
    deadlines: Deadlines = Deadlines()
    window: WindowSpec | None = None
    sessions: Sessions | None = None
    loadbalancer: HAProxyConfig
    hypervisor: LibvirtConfig | CommandSnapshotConfig | NoSnapshots
    hosts: dict[str, HostSpec]
    secrets: dict[str, SecretSpec] = {}  # where each secret's value lives; resolved by the worker
    four_eyes: bool = False  # the approver must not be who requested the rollout
    request: ChangeRequest | None = None  # set when a person submits it (run, schedule)

    def host_order(self) -> list[str]:
        return [h for batch in self.batches for h in batch]
