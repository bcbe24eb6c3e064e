"""Test doubles for the engine, and builders for specs and input files.

Every fake is in memory, deterministic and never sleeps; each records what it was asked to do so a
test can assert the exact sequence of actions. Errors queued in ``errors[method]`` are raised, one per
call and in order, before the method acts (an empty queue means "work normally"); the remote pool also
takes ``errors[f"{method}@{host}"]``, for one host only.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.adapters.checks.base import CheckResult
from orchestrator.adapters.loadbalancers.base import AdminState, Instance, ServerState
from orchestrator.engine.host.machine import HostPipeline
from orchestrator.engine.host.ports import Adapters, Controls
from orchestrator.engine.secrets import SecretValues
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import CommandTimeout, HypervisorError, LoadBalancerError
from orchestrator.model.inventory import HAProxyConfig, LibvirtConfig
from orchestrator.model.progress import Progress
from orchestrator.model.spec import CheckSpec, HostSpec, RolloutSpec, SSHSpec, StepSpec
from orchestrator.model.states import HostState
from orchestrator.results import CommandResult
from orchestrator.retry import RetryPolicy
from orchestrator.store.db import Store


def _raise_queued(errors: dict[str, list[Exception]], method: str, host: str = "") -> None:
    for key in (f"{method}@{host}", method) if host else (method,):
        queue = errors.get(key)
        if queue:
            raise queue.pop(0)


class FakeClock:
    """Wall clock for the pipeline's timeouts; only ``advance`` moves it."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLoadBalancer:
    """One backend. ``calls`` lists the admin actions that took effect, in order.

    ``sessions[server]`` is what ``state`` reports (lower it to end a drain). After the n-th ``ready``
    of a server, its status is ``statuses_after_ready[n-1]`` (the last entry repeats): ["DOWN", "UP"]
    is a server whose first return never passes the LB's check but whose second does.

    With ``servers`` it is the whole backend, as HAProxy sees it: ``servers()`` lists every one of them,
    and a name not among them raises (non-transient), as the real adapter does. Without, any name is
    taken as a server in service, and ``servers()`` lists only those already acted on.
    """

    def __init__(
        self,
        backend: str = "app",
        statuses_after_ready: list[str] | None = None,
        servers: list[str] | None = None,
    ) -> None:
        self.backend = backend
        self.known = frozenset(servers) if servers is not None else None
        self.admin: dict[str, AdminState] = dict.fromkeys(servers or [], AdminState.READY)
        self.sessions: dict[str, int] = {}
        self.statuses_after_ready = statuses_after_ready or ["UP"]
        self.readies: Counter[str] = Counter()
        self.calls: list[tuple[str, str]] = []
        self.attempts: Counter[str] = Counter()  # every call, failed ones included
        self.errors: dict[str, list[Exception]] = {}

    def _known(self, server: str) -> None:
        if self.known is not None and server not in self.known:
            raise LoadBalancerError(
                f"backend {self.backend} has no server {server!r}; it has: {', '.join(sorted(self.known))}"
            )

    def _act(self, method: str, server: str, admin: AdminState) -> None:
        self.attempts[method] += 1
        _raise_queued(self.errors, method)
        self._known(server)
        self.admin[server] = admin
        if admin is AdminState.READY:
            self.readies[server] += 1
        self.calls.append((method, server))

    def drain(self, server: str) -> None:
        self._act("drain", server, AdminState.DRAIN)

    def maint(self, server: str) -> None:
        self._act("maint", server, AdminState.MAINT)

    def ready(self, server: str) -> None:
        self._act("ready", server, AdminState.READY)

    def state(self, server: str) -> ServerState:
        if self.on_state is not None:
            self.on_state(self)
        self.attempts["state"] += 1
        _raise_queued(self.errors, "state")
        self._known(server)
        admin = self.admin.get(server, AdminState.READY)
        if admin is AdminState.READY:
            n = self.readies[server]
            status = self.statuses_after_ready[min(n, len(self.statuses_after_ready)) - 1] if n else "UP"
        else:
            status = admin.value.upper()
        return ServerState(self.backend, server, admin, status, self.sessions.get(server, 0))

    def servers(self) -> list[ServerState]:
        return [self.state(name) for name in self.admin]

    # A reload or restart: a new process (new pid); without saved server states it forgets every
    # admin state set at runtime. ``on_state`` runs before each ``state`` call (to reload mid-checks).
    pid: int = 100
    on_state: Callable[[FakeLoadBalancer], None] | None = None
    uptime: float = 1.0  # of the process that answers
    older_gone_in: float | None = None  # as HAProxy's adapter computes it from hard-stop-after

    def instance(self) -> Instance:
        return Instance(f"fake/{self.pid}", self.pid, self.uptime, self.older_gone_in)

    def reload(self, *, keep_states: bool = False) -> None:
        self.pid += 1
        if not keep_states:
            self.admin = dict.fromkeys(self.admin, AdminState.READY)


class FakeSnapshots:
    """Snapshots per domain. ``on_revert`` runs after a revert (e.g. to make the fake checks healthy)."""

    def __init__(self) -> None:
        self.snapshots: dict[str, list[str]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.memory: list[bool] = []
        self.errors: dict[str, list[Exception]] = {}
        self.on_revert: Callable[[], None] | None = None

    def create(self, domain: str, name: str, *, memory: bool) -> None:
        _raise_queued(self.errors, "create")
        names = self.snapshots.setdefault(domain, [])
        if name not in names:
            names.append(name)
        self.memory.append(memory)
        self.calls.append(("create", domain, name))

    def revert(self, domain: str, name: str) -> None:
        _raise_queued(self.errors, "revert")
        if name not in self.snapshots.get(domain, []):
            raise HypervisorError(f"domain {domain} has no snapshot {name}", domain=domain, snapshot=name)
        self.calls.append(("revert", domain, name))
        if self.on_revert:
            self.on_revert()

    def delete(self, domain: str, name: str) -> None:
        _raise_queued(self.errors, "delete")
        names = self.snapshots.get(domain, [])
        if name in names:
            names.remove(name)
        self.calls.append(("delete", domain, name))

    def list(self, domain: str) -> list[str]:
        _raise_queued(self.errors, "list")
        return list(self.snapshots.get(domain, []))


@dataclass
class FakeRemote:
    pool: FakeRemotePool
    host: str
    closed: bool = False

    def run(self, command: str, *, timeout: float) -> CommandResult:
        self.pool.commands.append((self.host, command))
        self.pool.timeouts.append(timeout)
        # Raised after the command was sent: a connection lost mid-command (it may have partly run).
        _raise_queued(self.pool.errors, "run", self.host)
        for pattern, outcome in self.pool.outcomes.items():
            if pattern in command:
                if outcome == "timeout":
                    raise CommandTimeout(
                        f"{command!r} on {self.host} outlived its {timeout:g}s timeout", host=self.host
                    )
                exit_code = int(outcome)
                break
        else:
            exit_code = 0
        stderr = f"{command}: failed with {exit_code}" if exit_code else ""
        stderr = next((text for pattern, text in self.pool.stderr.items() if pattern in command), stderr)
        out = next((text for pattern, text in self.pool.stdout.items() if pattern in command), "done")
        return CommandResult(command, exit_code, out + "\n", stderr, 0.01)

    def upload(self, local: Path, remote_path: str, *, mode: int | None = None) -> None:
        _raise_queued(self.pool.errors, "upload", self.host)
        self.pool.uploads.append((self.host, local, remote_path, mode))

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeRemotePool:
    """``outcomes`` maps a substring of a command to its exit code, or to "timeout"; ``stdout`` and
    ``stderr`` map a substring of a command to what it prints (default "done", and for a failure the
    command and its exit code)."""

    outcomes: dict[str, int | str] = field(default_factory=dict)
    stdout: dict[str, str] = field(default_factory=dict)
    stderr: dict[str, str] = field(default_factory=dict)  # as stdout; default: the command and its code
    commands: list[tuple[str, str]] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)  # each command's, in the order they ran
    uploads: list[tuple[str, Path, str, int | None]] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    errors: dict[str, list[Exception]] = field(default_factory=dict)
    gets: int = 0
    _open: dict[str, FakeRemote] = field(default_factory=dict)

    def get(self, host: HostSpec) -> FakeRemote:
        self.gets += 1
        _raise_queued(self.errors, "get", host.name)
        if host.name not in self._open:
            self._open[host.name] = FakeRemote(self, host.name)
        return self._open[host.name]

    def discard(self, host: HostSpec) -> None:
        self.discarded.append(host.name)
        remote = self._open.pop(host.name, None)
        if remote:
            remote.close()


@dataclass
class FakeCheck:
    name: str
    owner: FakeChecks

    def probe(self) -> CheckResult:
        return self.owner.probe(self.name)


class FakeChecks:
    """The check factory. ``healthy[label]`` is a bool, or a list of bools consumed one per probe (the
    last repeats). Labels not listed are healthy."""

    def __init__(self, healthy: dict[str, bool | list[bool]] | None = None) -> None:
        self.healthy: dict[str, bool | list[bool]] = healthy or {}
        self.probes: list[str] = []

    def __call__(self, spec: CheckSpec, host: HostSpec) -> FakeCheck:
        return FakeCheck(spec.label, self)

    def probe(self, label: str) -> CheckResult:
        self.probes.append(label)
        value = self.healthy.get(label, True)
        ok = (value.pop(0) if len(value) > 1 else value[0]) if isinstance(value, list) else value
        return CheckResult(ok, "HTTP 200" if ok else "HTTP 503")


@dataclass
class JournalStep:
    id: int
    host: str
    step: str
    started_detail: str
    outcome: str = ""
    detail: str = ""
    work: float = 0.0
    exit_code: int | None = None
    output_tail: str = ""
    command: str = ""
    output_sha256: str = ""


class MemoryJournal:
    """The pipeline's HostStore, in memory."""

    def __init__(self) -> None:
        self.holds: list[tuple[str, float]] = []
        self.saves: list[tuple[str, HostState, dict[str, Any]]] = []
        self.steps: list[JournalStep] = []
        self.actions: list[tuple[str, str, str]] = []  # (host, action, detail)
        self.events: list[tuple[str, str, dict[str, object]]] = []  # (host, kind, fields)

    def record_action(self, host: str, action: str, detail: str) -> None:
        self.actions.append((host, action, detail))

    def save(self, host: str, state: HostState, progress: Progress) -> None:
        self.saves.append((host, state, progress.to_json()))

    def hold(self, host: str, seconds: float) -> None:
        self.holds.append((host, seconds))

    def record_event(self, host: str, kind: str, **fields: object) -> None:
        self.events.append((host, kind, fields))

    def step_started(self, host: str, step: str, detail: str, *, command: str = "") -> int:
        self.steps.append(JournalStep(len(self.steps) + 1, host, step, detail, command=command))
        return len(self.steps)

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
        step = self.steps[step_id - 1]
        assert not step.outcome, f"step {step.step} ended twice"
        step.outcome, step.detail, step.work = outcome, detail, work
        step.exit_code, step.output_tail, step.output_sha256 = exit_code, output_tail, output_sha256

    def states(self) -> list[HostState]:
        """The states saved, consecutive repeats collapsed: the path the host took."""
        path: list[HostState] = []
        for _, state, _ in self.saves:
            if not path or path[-1] is not state:
                path.append(state)
        return path

    def outcomes(self) -> list[tuple[str, str]]:
        return [(s.step, s.outcome) for s in self.steps]


class FakeRuntime(Runtime):
    """The process's adapters for the coordinator's ticks, all fakes, shared by every host of the
    rollout (one load balancer backend, one hypervisor, one SSH pool), as one worker process has."""

    def __init__(self, lb: FakeLoadBalancer | None = None) -> None:
        super().__init__()  # an empty SSH pool: nothing connects
        self.lb = lb or FakeLoadBalancer()
        self.snaps = FakeSnapshots()
        self.pool = FakeRemotePool()
        self.checks = FakeChecks()
        self.secrets: list[SecretValues] = []  # what each snapshots() call was handed

    def adapters(self, spec: RolloutSpec) -> Adapters:
        return Adapters(lb=self.lb, snapshots=lambda _host: self.snaps, remotes=self.pool, check=self.checks)

    def snapshots(self, spec: RolloutSpec, host: HostSpec, secrets: SecretValues) -> FakeSnapshots:
        self.secrets.append(secrets)
        return self.snaps


# Builders


def sqlite_store(folder: Path, clock: Callable[[], float] | None = None) -> Store:
    """A fresh store in a SQLite file under ``folder`` (pytest's tmp_path), on ``clock`` if given."""
    return Store(f"sqlite:///{folder / 'store.db'}", clock=clock)


def ssh_spec(address: str = "10.0.0.1") -> SSHSpec:
    return SSHSpec(
        address=address,
        port=22,
        user="root",
        key_file=Path("/keys/id_ed25519"),
        known_hosts=Path("/keys/known_hosts"),
        connect_timeout=5.0,
    )


CHECK_NEW = CheckSpec(kind="http", label="http new", timeout=2.0, url="http://10.0.0.1:8080/health")
CHECK_OLD = CheckSpec(kind="http", label="http old", timeout=2.0, url="http://10.0.0.1:8080/health")


def host_spec(name: str = "web1", *, steps: list[StepSpec] | None = None) -> HostSpec:
    return HostSpec(
        name=name,
        address="10.0.0.1",
        domain=f"{name}-vm",
        lb_server=name,
        ssh=ssh_spec(),
        steps=steps
        if steps is not None
        else [
            StepSpec(
                kind="upload", label="upload app.tgz", timeout=30.0, src=Path("/a/app.tgz"), dest="/tmp/a"
            ),
            StepSpec(kind="run", label="run install", timeout=30.0, command="/opt/app/bin/install /tmp/a"),
        ],
        checks=[CHECK_NEW],
        revert_checks=[CHECK_OLD],
        snapshot_name="orch-R1",
    )


def rollout_spec(
    hosts: list[HostSpec] | None = None, batches: list[list[str]] | None = None, **overrides: Any
) -> RolloutSpec:
    hosts = hosts if hosts is not None else [host_spec()]
    fields: dict[str, Any] = {
        "rollout_id": "R1",
        "name": "app-v2",
        "pool": "web",
        "playbook_path": Path("/p/playbook.yaml"),
        "inventory_path": Path("/p/inventory.yaml"),
        "batches": batches if batches is not None else [[h.name] for h in hosts],
        "drain_timeout": 30.0,
        "drain_on_timeout": "fail",
        "snapshot_enabled": True,
        "snapshot_memory": True,
        "snapshot_retention": "delete_on_success",
        "snapshot_timeout": 120.0,
        "stabilize_interval": 1.0,
        "stabilize_successes": 3,
        "stabilize_timeout": 10.0,
        "on_failure": "halt",
        "loadbalancer": HAProxyConfig(socket=Path("/run/haproxy.sock"), backend="app"),
        "hypervisor": LibvirtConfig(),
        "hosts": {h.name: h for h in hosts},
    }
    return RolloutSpec(**(fields | overrides))


@dataclass
class Rig:
    """One host's pipeline wired to fakes."""

    spec: RolloutSpec
    host: HostSpec
    lb: FakeLoadBalancer
    snaps: FakeSnapshots
    remotes: FakeRemotePool
    checks: FakeChecks
    journal: MemoryJournal
    clock: FakeClock
    sleeps: list[float]
    pipeline: HostPipeline

    def drive(
        self,
        state: HostState = HostState.PENDING,
        progress: Progress | None = None,
        *,
        rounds: int = 10_000,
    ) -> tuple[HostState, Progress]:
        """Advance until terminal, moving the fake clock by every delay the pipeline asks for."""
        progress = progress or Progress()
        for _ in range(rounds):
            state, progress, delay = self.pipeline.advance(state, progress)
            if delay is None:
                return state, progress
            assert delay >= 0
            self.clock.advance(max(delay, 0.001))
        raise AssertionError(f"host still {state} after {rounds} rounds")


def rig(
    spec: RolloutSpec | None = None,
    *,
    snapshots: bool = True,
    lb: FakeLoadBalancer | None = None,
    attempts: int = 4,
    controls: Controls | None = None,
    created_ago: float | None = None,
) -> Rig:
    """One host's pipeline on fakes. ``controls``: the rollout's gate and abort (default: none);
    ``created_ago``: the rollout was created that many seconds before the fake clock's start (default:
    at the epoch, so every load balancer process counts as older than the rollout)."""
    spec = spec or rollout_spec()
    host = next(iter(spec.hosts.values()))
    lb = lb or FakeLoadBalancer()
    snaps = FakeSnapshots()
    remotes = FakeRemotePool()
    checks = FakeChecks()
    journal = MemoryJournal()
    clock = FakeClock()
    sleeps: list[float] = []
    adapters = Adapters(
        lb=lb, snapshots=lambda h: snaps if snapshots else None, remotes=remotes, check=checks
    )
    pipeline = HostPipeline(
        spec,
        host,
        adapters,
        journal,
        controls=controls,
        retry=RetryPolicy(attempts=attempts, sleep=sleeps.append),
        clock=clock,
        rollout_created=clock.now - created_ago if created_ago is not None else 0.0,
    )
    return Rig(spec, host, lb, snaps, remotes, checks, journal, clock, sleeps, pipeline)


# Input files

GOOD_PLAYBOOK = """\
name: web-v2
pool: web
strategy: {batches: [1, "50%"], on_failure: halt}
drain: {timeout: 30s}
snapshot: {enabled: true, retention: delete_on_success}
update:
  - upload: {src: app-2.tar.gz, dest: /tmp/app-2.tar.gz, mode: "0644"}
  - run: "{{ vars.app_dir }}/bin/install /tmp/app-2.tar.gz"
    timeout: 60s
checks:
  - http: {url: "http://{{ host.address }}:{{ vars.app_port }}/health", json: {version: "2"}}
  - tcp: {port: 22}
stabilize: {interval: 1s, successes: 3, timeout: 30s}
vars: {version: "2"}
"""

GOOD_INVENTORY = """\
vars: {env: test}
pools:
  web:
    loadbalancer: {type: haproxy, socket: /run/haproxy/admin.sock, backend: app}
    hypervisor: {type: libvirt, uri: "qemu:///system"}
    ssh: {user: root, key: keys/id_ed25519, known_hosts: keys/known_hosts}
    vars: {app_dir: /opt/app, app_port: 8080}
    hosts:
      web1: {address: 10.0.0.11}
      web2: {address: 10.0.0.12, domain: web2-vm}
      web3: {address: 10.0.0.13, lb_server: srv3}
"""

MARK = "# <-"


def marked_line(text: str) -> int:
    """The 1-based line carrying the ``# <-`` marker: the line an error must point at."""
    lines = [n for n, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(lines) == 1, f"expected one {MARK!r} marker, found {len(lines)}"
    return lines[0]


def write_inputs(
    folder: Path, playbook: str = GOOD_PLAYBOOK, inventory: str = GOOD_INVENTORY
) -> tuple[Path, Path]:
    """A playbook, an inventory, its key files and the upload source, all in ``folder``."""
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    (folder / "keys" / "id_ed25519").write_text("placeholder\n")
    (folder / "keys" / "known_hosts").write_text("# placeholder\n")
    (folder / "app-2.tar.gz").write_bytes(b"placeholder")
    book = folder / "playbook.yaml"
    inv = folder / "inventory.yaml"
    book.write_text(textwrap.dedent(playbook))
    inv.write_text(textwrap.dedent(inventory))
    return book, inv
