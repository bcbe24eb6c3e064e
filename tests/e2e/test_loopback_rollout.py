"""End to end on loopback: real HAProxy, real sshd per host, the real app, the CLI as a user runs it,
continuous client load, and a negative control in the same harness."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.lab.measure import naive_update, under_load
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store.db import Store
from tests.e2e.helpers import (
    PLAYBOOKS,
    all_up,
    cleanup,
    cli,
    journal_of,
    journal_text,
    lease_owners,
    orch_env,
    report,
    rollout_of,
    servers,
    set_host_vars,
    start_run,
    the_rollout,
    wait_for,
    worker,
    write_playbook,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=3)
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


def test_rolling_update_loses_no_request_and_the_control_shows_it_could(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "rolling", broker=False, reconcile_every=None)  # the product's own timings
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
        done = cli(["run", str(playbook), "-i", str(farm.inventory)], env, timeout=120)
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
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    # host2 gets a release that installs fine and fails its health check.
    playbook = write_playbook(
        tmp_path,
        "breaks-host2",
        artifact_var=True,
        stabilize={"interval": "200ms", "successes": 3, "timeout": "5s"},
    )
    set_host_vars(farm, {"host2": {"artifact": "app-2-broken.tar.gz"}}, artifact="app-2.tar.gz")
    env = orch_env(tmp_path, "breaks-host2", broker=True, reconcile_every=None)
    store = Store(env["ORCH_DATABASE_URL"])
    owners: set[str] = set()  # every lease holder seen on the rollout's hosts: who ran their ticks
    with cleanup(env) as procs:  # the worker stopped, its queue gone from the shared broker
        separate = worker(env, tmp_path / "worker.log", loglevel="INFO")  # INFO: a line per task
        procs.append(separate)
        with under_load(farm.url, farm.haproxy.socket_path) as figures:
            run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
            procs.append(run)
            rollout_id = the_rollout(store).id

            def ended() -> bool:
                owners.update(o for o in lease_owners(store, rollout_id).values() if o)
                return not run.alive()

            wait_for(ended, 120, "`run` to end", 0.02)
        measured = figures()
        code = run.wait(10)
        worker_pid = separate.pid
    output, worker_log = run.output(), separate.output()
    final = rollout_of(store, rollout_id)
    states = {h.name: h.state for h in store.hosts(rollout_id)}
    host2 = journal_of(store, rollout_id, "host2")
    report(
        "host2 broken, separate worker",
        f"{measured.load.summary()}; rollout {measured.seconds:.2f}s; lease holders seen {sorted(owners)} "
        f"(worker pid {worker_pid}, run pid {run.pid}); host2 journal: {journal_text(host2)}",
    )
    report("orchestrator output", output[-3000:])

    assert code == 1, output
    assert "rolled_back" in output and "halted" in output, output
    assert final.state is RolloutState.HALTED, final.reason
    assert states == {
        "host1": HostState.SUCCEEDED,
        "host2": HostState.ROLLED_BACK,
        "host3": HostState.SKIPPED,
    }, states
    assert [s.step for s in host2 if s.outcome == "failed"] == ["checks"], journal_text(host2)
    assert [s.step for s in host2][-3:] == ["revert", "verify_old", "restore"], journal_text(host2)
    assert not journal_of(store, rollout_id, "host3"), "host3 must not be touched after the halt"
    # The separate worker did the work: `run` had no worker of its own (it says where the work goes),
    # every lease on the hosts was the worker process's, and the worker's log names the tasks it ran.
    assert "(broker amqp://guest:***@127.0.0.1:5672//)" in output, output
    assert "in-process worker" not in output, output
    assert owners == {f"{socket.gethostname()}/{worker_pid}"}, (owners, worker_pid, run.pid)
    assert "orchestrator.start_rollout" in worker_log and "orchestrator.host_tick" in worker_log, worker_log
    assert " succeeded in " in worker_log, worker_log[-3000:]
    assert "orchestrator.host_tick" not in output, output
    versions = farm.versions()
    assert "version 2" in versions["host1"]
    assert "version 1" in versions["host2"], "host2 must be back on the old release, from its snapshot"
    assert "version 1" in versions["host3"], "host3 must be untouched"
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert measured.min_in_service >= 2
    # Every server ends in service.
    wait_for(lambda: all_up(farm), 10, "every server of the pool to be plain UP in HAProxy", 0.1)
    assert all(s.in_service for s in servers(farm)), servers(farm)
