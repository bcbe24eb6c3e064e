"""End to end on loopback: real HAProxy, real sshd per host, the real app, the CLI as a user runs it,
continuous client load, and a negative control in the same harness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.lab.measure import naive_update, under_load
from tests.e2e.fault_helpers import forget_queue

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=3)
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "ORCH_HOME": str(tmp_path / "home"),
        "ORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'orch.db'}",
        "ORCH_BROKER_URL": "",
    }


def cli(args: list[str], env: dict[str, str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI exactly as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def report(title: str, text: str) -> None:
    """Figures go into the test output whatever pytest captures."""
    sys.__stdout__.write(f"\n[{title}] {text}\n")
    sys.__stdout__.flush()


def test_rolling_update_loses_no_request_and_the_control_shows_it_could(
    farm: LoopbackFarm, env: dict[str, str], tmp_path: Path
) -> None:
    playbook = PLAYBOOKS / "loopback-v2.yaml"
    # The control first, on a second farm: the same update without draining must cost requests,
    # or this harness could not see downtime and "0 failed" below would prove nothing.
    control_farm = LoopbackFarm(tmp_path / "control", hosts=3)
    control_farm.start()
    try:
        with under_load(control_farm.url, control_farm.haproxy.socket_path) as control_figures:
            naive_update(control_farm.inventory, playbook)
        control = control_figures()
    finally:
        control_farm.stop()
    report("negative control, no drain", control.load.summary())

    with under_load(farm.url, farm.haproxy.socket_path) as figures:
        done = cli(["run", str(playbook), "-i", str(farm.inventory)], env)
    rollout = figures()
    report(
        "orchestrated rollout",
        f"{rollout.load.summary()}; rollout {rollout.seconds:.2f}s; "
        f"min in service {rollout.min_in_service}/3",
    )
    report("orchestrator output", done.stdout[-3000:])

    assert control.load.failed > 0, "the harness must be able to see downtime"
    assert done.returncode == 0, done.stdout + done.stderr
    assert rollout.load.failed == 0, rollout.load.failures()[:5]
    assert rollout.load.sent > 50
    assert all("version 2" in v for v in farm.versions().values()), farm.versions()
    assert rollout.min_in_service >= 3 - 1  # batch size 1
    assert rollout.load.versions().keys() >= {"1", "2"}


def test_update_that_breaks_host2_is_reverted_and_halts_on_a_separate_worker(
    farm: LoopbackFarm, env: dict[str, str], tmp_path: Path
) -> None:
    # host2 gets a release that installs fine and fails its health check.
    playbook = tmp_path / "breaks-host2.yaml"
    text = (PLAYBOOKS / "loopback-v2.yaml").read_text()
    playbook.write_text(
        text.replace("{{ vars.files }}/app-2.tar.gz", "{{ vars.files }}/{{ vars.artifact }}").replace(
            "stabilize: {interval: 200ms, successes: 3, timeout: 30s}",
            "stabilize: {interval: 200ms, successes: 3, timeout: 5s}",
        )
    )
    inventory = farm.inventory_data()
    hosts = inventory["pools"]["loopback"]["hosts"]  # type: ignore[index]
    for name, host in hosts.items():
        host["vars"]["artifact"] = "app-2-broken.tar.gz" if name == "host2" else "app-2.tar.gz"
    import yaml

    farm.inventory.write_text(yaml.safe_dump(inventory))
    worker_env = {**env, "ORCH_BROKER_URL": RABBITMQ, "ORCH_QUEUE": f"e2e-{os.getpid()}-{time.time_ns()}"}
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "worker", "--concurrency", "2", "--loglevel", "WARNING"],
        env={**os.environ, **worker_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=worker_log,
        start_new_session=True,
    )
    try:
        with under_load(farm.url, farm.haproxy.socket_path) as figures:
            done = cli(["run", str(playbook), "-i", str(farm.inventory)], worker_env)
        measured = figures()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()
        forget_queue(worker_env["ORCH_QUEUE"])  # the shared broker keeps nothing of this test
    report("host2 broken", f"{measured.load.summary()}; rollout {measured.seconds:.2f}s")
    report("orchestrator output", done.stdout[-3000:])

    assert done.returncode == 1, done.stdout + done.stderr
    assert "rolled_back" in done.stdout and "halted" in done.stdout
    versions = farm.versions()
    assert "version 2" in versions["host1"]
    assert "version 1" in versions["host2"], "host2 must be back on the old release, from its snapshot"
    assert "version 1" in versions["host3"], "host3 must be untouched"
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert measured.min_in_service >= 2
    # Every server ends in service.
    from orchestrator.adapters.loadbalancers.haproxy import HAProxy

    lb = HAProxy(socket=farm.haproxy.socket_path, backend="app")
    deadline = time.monotonic() + 10
    while not all(s.in_service for s in lb.servers()):
        assert time.monotonic() < deadline, lb.servers()
        time.sleep(0.1)
