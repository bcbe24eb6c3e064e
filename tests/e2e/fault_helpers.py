"""Helpers for the fault tests (tests/e2e/test_faults.py): the CLI and workers as real processes, bounded
waits, RabbitMQ stop/start, the slow playbook, and the end state every fault test must reach."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.errors import LoadBalancerError
from orchestrator.lab.loopback import FarmHost, LoopbackFarm
from orchestrator.model.records import Step
from orchestrator.store.db import Store

T = TypeVar("T")

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
RABBITMQ_ADDRESS = ("127.0.0.1", 5672)
SLOW_STEP_SECONDS = 3
APPLIED_LOG = "{{ vars.app_dir }}/releases/applied.log"
# The first update step of the fault tests: evidence inside the snapshot's scope, then a while to run.
SLOW_STEP = f"echo applied >> {APPLIED_LOG} && sleep {SLOW_STEP_SECONDS}"


def report(title: str, text: str) -> None:
    """Figures go to the real stdout whatever pytest captures."""
    out = sys.__stdout__
    assert out is not None
    out.write(f"\n[fault: {title}] {text}\n")
    out.flush()


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until ``check`` returns something truthy; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def fault_env(tmp_path: Path, name: str, *, broker: bool) -> dict[str, str]:
    """Settings shared by the CLI and the workers of one test: its own store and its own queue."""
    return {
        "ORCH_HOME": str(tmp_path / "home"),
        "ORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'orch.db'}",
        "ORCH_BROKER_URL": RABBITMQ if broker else "",
        "ORCH_QUEUE": f"faults-{name}-{os.getpid()}-{time.time_ns()}",
        "ORCH_RECONCILE_EVERY": "0.5",
        "ORCH_RECONCILE_AFTER": "2",
    }


def slow_playbook(tmp_path: Path, command: str = SLOW_STEP) -> Path:
    """loopback-v2.yaml with ``command`` as its first update step: a window to inject faults into a
    running command, leaving evidence in releases/applied.log (inside the snapshot's scope)."""
    text = (PLAYBOOKS / "loopback-v2.yaml").read_text()
    slow = f'  - run: "{command}"\n    timeout: 30s\n'
    marker = "update:\n"
    assert marker in text
    path = tmp_path / "slow-v2.yaml"
    path.write_text(text.replace(marker, marker + slow, 1))
    return path


def applied_log(host: FarmHost) -> list[str]:
    log = host.app_dir / "releases" / "applied.log"
    return log.read_text().splitlines() if log.exists() else []


def applied_lines(host: FarmHost) -> int:
    return len(applied_log(host))


def sshd_connection_pids(pids: list[int]) -> list[int]:
    """Of an sshd's descendants, its per-connection processes only (not the commands they run): killing
    them is what a dropped connection does to the server side."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                found.append(pid)
    return found


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
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not end within {timeout:g}s; output:\n{self.output()}"
            ) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def orchestrator(args: list[str], env: dict[str, str], log: Path) -> Proc:
    return Proc([sys.executable, "-m", "orchestrator", *args], env, log)


def worker(env: dict[str, str], log: Path) -> Proc:
    return orchestrator(["worker", "--concurrency", "2", "--loglevel", "WARNING"], env, log)


@contextlib.contextmanager
def cleanup(env: dict[str, str]) -> Iterator[list[Proc]]:
    """Every process appended to the yielded list is stopped at the end, whatever happened; then the
    test's own queue and exchange leave the shared broker."""
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()
        if env.get("ORCH_BROKER_URL"):
            forget_queue(env["ORCH_QUEUE"])


def cli(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in the foreground, as a user runs it."""
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


def the_rollout(store: Store, timeout: float = 20) -> str:
    rollouts = wait_for(store.rollouts, timeout, "the rollout to be stored")
    assert len(rollouts) == 1, [r.id for r in rollouts]
    return rollouts[0].id


def command_running(store: Store, rollout_id: str, host: FarmHost, step: str = "update[0]") -> bool:
    """The journal says ``step`` is running on the host, and the command has visibly started there."""
    running = any(
        s.host == host.name and s.step == step and s.outcome == "running" for s in store.steps(rollout_id)
    )
    return running and applied_lines(host) > 0


def journal_of(store: Store, rollout_id: str, host: str) -> list[Step]:
    return [s for s in store.steps(rollout_id) if s.host == host]


def journal_text(steps: list[Step]) -> str:
    return "; ".join(f"{s.host} {s.step}#{s.attempt} {s.outcome}" for s in steps)


# The end state every fault test closes with


def servers(farm: LoopbackFarm) -> list[ServerState]:
    return HAProxy(socket=farm.haproxy.socket_path, backend="app").servers()


def all_up(farm: LoopbackFarm) -> list[ServerState] | None:
    try:
        found = servers(farm)
    except LoadBalancerError:
        return None
    return found if found and all(s.up_after_check for s in found) else None


def assert_end_state(farm: LoopbackFarm, store: Store, rollout_id: str, versions: dict[str, str]) -> None:
    """Every server in service (plain UP), every host on the version expected, and a journal with no
    step left running."""
    try:
        wait_for(lambda: all_up(farm), 10, "every server of the pool to be plain UP in HAProxy", 0.1)
    except AssertionError:
        raise AssertionError(f"not every server is plain UP: {servers(farm)}") from None
    actual = farm.versions()
    for name, version in versions.items():
        assert f"version {version})" in actual[name], actual
    steps = store.steps(rollout_id)
    left = [s for s in steps if s.outcome == "running" or s.ended_at is None]
    assert not left, f"journal rows left running: {journal_text(left)}"
    assert all(s.outcome in {"ok", "failed", "interrupted"} for s in steps), journal_text(steps)


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


def rabbitmq_stop(timeout: float = 60) -> None:
    subprocess.run(
        ["rabbitmqctl", "stop"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    wait_for(lambda: not amqp_listening(), timeout, "RabbitMQ to stop listening on 5672", 0.1)


def amqp_answers() -> bool:
    """The broker answers an AMQP 0-9-1 protocol header with its first frame (Connection.Start)."""
    try:
        with socket.create_connection(RABBITMQ_ADDRESS, timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            first = sock.recv(8)
    except OSError:
        return False
    return first[:1] == b"\x01"  # a method frame; a refusal would echo a protocol header instead


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
