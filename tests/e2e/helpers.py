"""What the end-to-end tests share, one contract each: the CLI and workers as real processes, bounded waits
and observation windows, one test's settings, playbooks derived from loopback-v2.yaml, the store and
HAProxy seen from the test, the end state a rollout must leave, and RabbitMQ stopped and started.

Every wait is on a condition (``wait_for``); a test that must see nothing happen for a while samples the
whole window (``sample_for``) and checks every sample, not only the state after it."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import select

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.errors import LoadBalancerError
from orchestrator.lab.loopback import FarmHost, LoopbackFarm
from orchestrator.model.records import Rollout, Step
from orchestrator.model.states import ROLLOUT_DONE, HostState, RolloutState
from orchestrator.store.db import Store
from orchestrator.store.schema import HostRow

T = TypeVar("T")

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
RABBITMQ_ADDRESS = ("127.0.0.1", 5672)
SLOW_STEP_SECONDS = 3
APPLIED_LOG = "{{ vars.app_dir }}/releases/applied.log"
# The first update step of slow_playbook: evidence inside the snapshot's scope, then a while to run.
SLOW_STEP = f"echo applied >> {APPLIED_LOG} && sleep {SLOW_STEP_SECONDS}"


def report(title: str, text: str) -> None:
    """Write ``[<test module>: title] text`` to the real stdout, whatever pytest captures: the figures a
    test measured (timings, counts, states), for a reader of the run rather than for an assertion."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    module = Path(current.split("::", 1)[0]).stem.removeprefix("test_").replace("_", " ") or "e2e"
    out = sys.__stdout__
    assert out is not None
    out.write(f"\n[{module}: {title}] {text}\n")
    out.flush()


# Waiting


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` every ``interval`` until it returns something truthy, and return that; after
    ``timeout`` seconds fail the test naming ``what``. Use it wherever the test waits for something to
    happen: it returns as soon as it has."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def sample_for(seconds: float, read: Callable[[], T], interval: float = 0.1) -> list[T]:
    """A deliberate observation window, for a test that must see nothing happen for a while: call
    ``read`` every ``interval`` for ``seconds`` (at least once) and return every reading, so the test
    checks each of them, not only the state after the window."""
    end = time.monotonic() + seconds
    readings = [read()]
    while time.monotonic() + interval <= end:
        time.sleep(interval)
        readings.append(read())
    return readings


# One test's settings, processes and playbooks


def orch_env(
    tmp_path: Path,
    name: str,
    *,
    broker: bool,
    reconcile_every: float | None = 0.5,
    reconcile_after: float | None = None,
) -> dict[str, str]:
    """The ORCH_* settings shared by the CLI and the workers of one test: its own store (SQLite under
    ``tmp_path``) and its own queue; RabbitMQ as broker when ``broker`` (else `run` works with its
    in-process worker and an operator command from another process only changes the store, which the
    run's reconciler carries out); a reconciler round every ``reconcile_every`` s, resuming hosts quiet
    for ``reconcile_after`` s (either the product's default when None)."""
    env = {
        "ORCH_HOME": str(tmp_path / "home"),
        "ORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'orch.db'}",
        "ORCH_BROKER_URL": RABBITMQ if broker else "",
        "ORCH_QUEUE": f"e2e-{name}-{os.getpid()}-{time.time_ns()}",
    }
    if reconcile_every is not None:
        env["ORCH_RECONCILE_EVERY"] = str(reconcile_every)
    if reconcile_after is not None:
        env["ORCH_RECONCILE_AFTER"] = str(reconcile_after)
    return env


def write_playbook(
    tmp_path: Path,
    name: str,
    *,
    steps_before: list[dict[str, Any]] | None = None,
    step_timeout: str | None = None,
    artifact_var: bool = False,
    **changes: Any,
) -> Path:
    """loopback-v2.yaml written to ``tmp_path/<name>.yaml``, named ``loopback-<name>``: top-level keys
    replaced by ``changes``, ``step_timeout`` on each of its own update steps, ``steps_before`` put in
    front of them, and (``artifact_var``) the artifact named by each host's ``vars.artifact``."""
    data = yaml.safe_load((PLAYBOOKS / "loopback-v2.yaml").read_text())
    data["name"] = f"loopback-{name}"
    data.update(changes)
    if step_timeout is not None:
        for step in data["update"]:
            step["timeout"] = step_timeout
    data["update"] = [*(steps_before or []), *data["update"]]
    if artifact_var:
        upload = data["update"][len(steps_before or [])]["upload"]
        assert upload["src"] == "{{ vars.files }}/app-2.tar.gz", upload
        upload["src"] = "{{ vars.files }}/{{ vars.artifact }}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def slow_playbook(tmp_path: Path, command: str = SLOW_STEP) -> Path:
    """loopback-v2.yaml with ``command`` (30 s timeout) as its first update step, update[0]: a window to
    inject faults into a running command; the default leaves evidence in releases/applied.log (inside
    the snapshot's scope) and then sleeps SLOW_STEP_SECONDS."""
    return write_playbook(tmp_path, "slow-v2", steps_before=[{"run": command, "timeout": "30s"}])


def set_host_vars(farm: LoopbackFarm, per_host: dict[str, dict[str, Any]], **every: Any) -> None:
    """Add vars to the farm's inventory: ``every`` for each host, then ``per_host`` on top."""
    inventory = farm.inventory_data()
    hosts = inventory["pools"]["loopback"]["hosts"]  # type: ignore[index]
    for name, host in hosts.items():
        host["vars"].update(every)
        host["vars"].update(per_host.get(name, {}))
    farm.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))


class Proc:
    """A process of ours in its own session, output to a file; stopped with its whole group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = " ".join(args[2:4])
        self.log = log
        self._out = log.open("w")
        self.popen = subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group and reap it."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._out.close()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a worker's warm shutdown), SIGKILL after ``timeout``; always reaps the group."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill()

    def wait(self, timeout: float) -> int:
        """The exit status; fails the test, with the output, when the process did not end in time."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not end within {timeout:g}s; output:\n{self.output()}"
            ) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def orchestrator(args: list[str], env: dict[str, str], log: Path) -> Proc:
    """`orchestrator ARGS` in the background (this interpreter, so its pid is the orchestrator's)."""
    return Proc([sys.executable, "-m", "orchestrator", *args], env, log)


def start_run(
    playbook: Path, inventory: Path, env: dict[str, str], log: Path, extra: Sequence[str] = ()
) -> Proc:
    """`orchestrator run PLAYBOOK -i INVENTORY [EXTRA]` in the background, its output to ``log``."""
    return orchestrator(["run", str(playbook), "-i", str(inventory), *extra], env, log)


def worker(env: dict[str, str], log: Path, loglevel: str = "WARNING") -> Proc:
    """`orchestrator worker` (2 threads) for the broker and queue in ``env``."""
    return orchestrator(["worker", "--concurrency", "2", "--loglevel", loglevel], env, log)


@contextlib.contextmanager
def cleanup(env: dict[str, str]) -> Iterator[list[Proc]]:
    """Every process appended to the yielded list is stopped at the end, whatever happened; then, when
    ``env`` names a broker, the test's own queue and exchange leave the shared broker."""
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()
        if env.get("ORCH_BROKER_URL"):
            forget_queue(env["ORCH_QUEUE"])


def cli(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in the foreground, as a user runs it (in its own session); output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        start_new_session=True,
    )


# The store, seen from the test


def the_rollout(store: Store, timeout: float = 30) -> Rollout:
    """The one rollout of this test's store, once `run` stored it (its preflight done)."""
    rollouts = wait_for(store.rollouts, timeout, "the rollout to be stored")
    assert len(rollouts) == 1, [r.id for r in rollouts]
    return rollouts[0]


def rollout_of(store: Store, rollout_id: str) -> Rollout:
    rollout = store.rollout(rollout_id)
    assert rollout is not None, rollout_id
    return rollout


def wait_rollout(
    store: Store, rollout_id: str, states: set[RolloutState], timeout: float, what: str = ""
) -> Rollout:
    """Wait for the rollout to be in one of ``states``; fail at once if it ended in another."""

    def reached() -> Rollout | None:
        rollout = rollout_of(store, rollout_id)
        if rollout.state in states:
            return rollout
        if rollout.state in ROLLOUT_DONE:  # finished elsewhere: fail now, naming where it ended
            raise AssertionError(f"rollout ended {rollout.state.value} ({rollout.reason}) waiting for {what}")
        return None

    names = "/".join(sorted(s.value for s in states))
    return wait_for(reached, timeout, what or f"the rollout to be {names}", 0.1)


def host_states(store: Store, rollout_id: str) -> dict[str, HostState]:
    return {h.name: h.state for h in store.hosts(rollout_id)}


def state_text(store: Store, rollout_id: str) -> str:
    """``host1 succeeded, host2 pending, ...``"""
    return ", ".join(f"{n} {s.value}" for n, s in host_states(store, rollout_id).items())


def lease_owners(store: Store, rollout_id: str) -> dict[str, str | None]:
    """Who holds each host's lease right now: ``machine/pid`` of the process running its tick (see
    orchestrator.procs.OWNER), None between ticks."""
    with store.session() as s:
        rows = s.scalars(select(HostRow).where(HostRow.rollout_id == rollout_id))
        return {r.name: r.lease_owner for r in rows}


def journal_of(store: Store, rollout_id: str, host: str) -> list[Step]:
    """The host's journal rows, oldest first."""
    return [s for s in store.steps(rollout_id) if s.host == host]


def journal_text(steps: list[Step]) -> str:
    """``host2 update[0]#1 interrupted; host2 update[0]#2 ok; ...``: step, attempt and outcome."""
    return "; ".join(f"{s.host} {s.step}#{s.attempt} {s.outcome}" for s in steps)


def actions_text(store: Store, rollout_id: str) -> str:
    return "; ".join(
        f"{action} by {actor} ({detail})" for _, action, actor, detail in store.actions(rollout_id)
    )


def command_running(store: Store, rollout_id: str, host: FarmHost, step: str = "update[0]") -> bool:
    """The journal says ``step`` is running on the host, and slow_playbook's command has visibly started
    there (a line in its applied.log)."""
    running = any(
        s.host == host.name and s.step == step and s.outcome == "running" for s in store.steps(rollout_id)
    )
    return running and applied_lines(host) > 0


def applied_log(host: FarmHost) -> list[str]:
    """The lines slow_playbook's command wrote on the host (releases/applied.log, in the snapshot)."""
    log = host.app_dir / "releases" / "applied.log"
    return log.read_text().splitlines() if log.exists() else []


def applied_lines(host: FarmHost) -> int:
    return len(applied_log(host))


# The farm and its HAProxy, seen from the test


def versions(farm: LoopbackFarm) -> dict[str, str]:
    """Each host's version as its own appctl reports it: '1', '2', or what went wrong."""
    result = {}
    for name, text in farm.versions().items():
        marker = "version "
        result[name] = text.split(marker, 1)[1].split(")", 1)[0] if marker in text else text
    return result


def lb(farm: LoopbackFarm) -> HAProxy:
    """The farm's HAProxy backend ``app`` over its runtime socket."""
    return HAProxy(socket=farm.haproxy.socket_path, backend="app")


def servers(farm: LoopbackFarm) -> list[ServerState]:
    """Every server of the backend as HAProxy has it now; raises LoadBalancerError when unreachable."""
    return lb(farm).servers()


def all_up(farm: LoopbackFarm) -> list[ServerState] | None:
    """Every server of the pool plain UP (a check passed), or None (also when HAProxy does not answer)."""
    try:
        found = servers(farm)
    except LoadBalancerError:
        return None
    return found if found and all(s.up_after_check for s in found) else None


def sshd_connection_pids(pids: list[int]) -> list[int]:
    """Of an sshd's descendants, its per-connection processes only (not the commands they run): killing
    them is what a dropped connection does to the server side."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                found.append(pid)
    return found


def assert_end_state(farm: LoopbackFarm, store: Store, rollout_id: str, expected: dict[str, str]) -> None:
    """Every server in service (plain UP within 10 s), every host on the version ``expected`` of it, and
    a journal with no step left running."""
    try:
        wait_for(lambda: all_up(farm), 10, "every server of the pool to be plain UP in HAProxy", 0.1)
    except AssertionError:
        raise AssertionError(f"not every server is plain UP: {servers(farm)}") from None
    actual = versions(farm)
    assert {name: actual[name] for name in expected} == expected, actual
    steps = store.steps(rollout_id)
    left = [s for s in steps if s.outcome == "running" or s.ended_at is None]
    assert not left, f"journal rows left running: {journal_text(left)}"
    assert all(s.outcome in {"ok", "failed", "interrupted"} for s in steps), journal_text(steps)


@dataclass(frozen=True)
class Sample:
    t: float  # time.time(), to compare with the store's times
    servers: dict[str, str]  # server -> "ready UP", "drain UP", "maint MAINT"...
    in_service: frozenset[str]


class ServerWatch:
    """Every server's state in HAProxy, read every 100 ms in a thread (bounded by ``max_seconds``)."""

    def __init__(self, farm: LoopbackFarm, max_seconds: float = 300.0) -> None:
        self._lb = lb(farm)
        self._max = max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="server-watch", daemon=True)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the HAProxy watcher did not stop"

    def _run(self) -> None:
        deadline = time.monotonic() + self._max
        while time.monotonic() < deadline:
            t = time.time()
            try:
                found = self._lb.servers()
            except LoadBalancerError as exc:  # a gap in the record: kept, and windows need enough samples
                self.errors.append(str(exc))
            else:
                sample = Sample(
                    t,
                    {s.server: f"{s.admin.value} {s.status}" for s in found},
                    frozenset(s.server for s in found if s.in_service),
                )
                with self._lock:
                    self._samples.append(sample)
            if self._stop.wait(0.1):
                return

    def samples(self, since: float = 0.0, until: float = float("inf")) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if since <= s.t <= until]

    def out_of_service(
        self, names: set[str], since: float = 0.0, until: float = float("inf"), min_samples: int = 5
    ) -> list[str]:
        """The samples of the window in which any of ``names`` did not take traffic, described. Fails when
        the window holds fewer than ``min_samples`` samples: an empty answer must mean "seen in service"."""
        window = self.samples(since, until)
        assert len(window) >= min_samples, (
            f"{len(window)} HAProxy samples in the window, {min_samples} needed "
            f"({len(self.errors)} reads failed: {self.errors[:3]})"
        )
        return [f"t={s.t - since:.1f}s {s.servers}" for s in window if not names <= s.in_service]

    def min_in_service(self) -> int:
        samples = self.samples()
        assert samples, f"no sample of HAProxy's servers ({len(self.errors)} reads failed)"
        return min(len(s.in_service) for s in samples)

    def ever_out(self) -> set[str]:
        """Servers seen out of service at least once."""
        out: set[str] = set()
        for s in self.samples():
            out |= set(s.servers) - s.in_service
        return out


# Maintenance windows on the wall clock (the product reads real UTC time)


def hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")


@dataclass(frozen=True)
class WindowPlan:
    """A UTC window open from the current minute until ``closes`` (a minute boundary), shut for one
    minute, then open again from ``reopens`` for ten minutes; ``launch`` is when to start the rollout so
    that its first host sees ``lead`` seconds left."""

    launch: float
    closes: float
    reopens: float
    allowed: list[str]


def plan_window(now: float, lead: float) -> WindowPlan:
    closes = math.ceil((now + lead + 1.0) / 60.0) * 60.0
    reopens = closes + 60.0
    opened = math.floor(now / 60.0) * 60.0
    allowed = [f"daily {hhmm(opened)}-{hhmm(closes)}", f"daily {hhmm(reopens)}-{hhmm(reopens + 600)}"]
    return WindowPlan(launch=closes - lead, closes=closes, reopens=reopens, allowed=allowed)


# RabbitMQ, which the machine's other tests need: whoever stops it must start it again.


def forget_queue(name: str) -> None:
    """Celery declared a durable queue and a direct exchange named after ORCH_QUEUE: delete both."""
    from kombu.connection import Connection

    with Connection(RABBITMQ, connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
        channel = conn.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def amqp_listening() -> bool:
    try:
        with socket.create_connection(RABBITMQ_ADDRESS, timeout=0.5):
            return True
    except OSError:
        return False


def amqp_answers() -> bool:
    """The broker answers an AMQP 0-9-1 protocol header with its first frame (Connection.Start)."""
    try:
        with socket.create_connection(RABBITMQ_ADDRESS, timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            first = sock.recv(8)
    except OSError:
        return False
    return first[:1] == b"\x01"  # a method frame; a refusal would echo a protocol header instead


def rabbitmq_stop(timeout: float = 60) -> None:
    """`rabbitmqctl stop`, then wait until nothing listens on 5672."""
    subprocess.run(
        ["rabbitmqctl", "stop"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    wait_for(lambda: not amqp_listening(), timeout, "RabbitMQ to stop listening on 5672", 0.1)


def rabbitmq_start(timeout: float = 90) -> None:
    """Start RabbitMQ the way the machine does, unless it already answers; wait until AMQP works."""
    if amqp_answers():
        return
    subprocess.run(
        ["rabbitmq-server", "-detached"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
        start_new_session=True,
    )
    subprocess.run(
        ["rabbitmqctl", "--timeout", str(int(timeout)), "await_startup"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    wait_for(amqp_answers, timeout, "RabbitMQ to accept AMQP connections again", 0.5)
