"""Interruptions lose nothing: Ctrl-C on `run` once (a pause: the host in flight finishes and goes
back, the CLI names the rollout and `resume`) and twice (leave at once, saying which servers are out);
a PostgreSQL restart in the middle of a rollout (in-process and over RabbitMQ). Real processes: the
loopback farm (HAProxy, an sshd and the app per host), the CLI as a user runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.db import Store
from tests.e2e.helpers import (
    all_up,
    applied_lines,
    assert_end_state,
    cleanup,
    cli,
    command_running,
    journal_of,
    journal_text,
    orch_env,
    report,
    servers,
    slow_playbook,
    start_run,
    the_rollout,
    wait_for,
    worker,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
H = HostState


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=3)
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


def in_state(store: Store, rollout_id: str, host: str, state: HostState) -> bool:
    return store.host(rollout_id, host).state is state


@pytest.mark.parametrize("at", [H.UPDATING, H.CHECKING], ids=["mid-update", "mid-checks"])
def test_ctrl_c_once_pauses_lets_the_host_in_flight_finish_and_names_resume(
    farm: LoopbackFarm, tmp_path: Path, at: HostState
) -> None:
    env = orch_env(tmp_path, "ctrlc1", broker=False, reconcile_after=2)
    playbook = slow_playbook(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    with cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: in_state(store, rollout_id, "host1", at), 30, f"host1 {at.value}", 0.01)
        run.popen.send_signal(signal.SIGINT)
        code = run.wait(60)
        output = run.output()
        report(f"ctrl-c once ({at.value})", output[-1500:])
        assert code == 130, output
        assert "Ctrl-C: pausing; no new host starts, the hosts in flight finish" in output
        assert f"rollout {rollout_id} is paused, every server back in the pool" in output
        assert f"`orchestrator resume {rollout_id}`" in output
        rollout = store.rollout(rollout_id)
        assert rollout is not None and rollout.state is RolloutState.PAUSED
        assert rollout.pause_cause is PauseCause.OPERATOR
        states = {h.name: h.state for h in store.hosts(rollout_id)}
        assert states == {"host1": H.SUCCEEDED, "host2": H.PENDING, "host3": H.PENDING}, states
        assert all_up(farm) is not None, servers(farm)  # nothing left out of the pool
        done = cli(["resume", rollout_id], env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    assert_end_state(farm, store, rollout_id, {"host1": "2", "host2": "2", "host3": "2"})


def test_ctrl_c_twice_leaves_at_once_and_says_which_server_is_out(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "ctrlc2", broker=False, reconcile_after=2)
    playbook = slow_playbook(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    with cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: command_running(store, rollout_id, farm.hosts[0]), 30, "host1's slow command", 0.01)
        run.popen.send_signal(signal.SIGINT)
        wait_for(lambda: "Ctrl-C: pausing" in run.output() or None, 10, "the first Ctrl-C's words", 0.02)
        run.popen.send_signal(signal.SIGINT)
        code = run.wait(30)
        output = run.output()
        report("ctrl-c twice", output[-1500:])
        assert code == 130, output
        assert f"Ctrl-C again: leaving now; rollout {rollout_id} is paused" in output
        assert "host1: updating" in output and "OUT of the load balancer pool" in output, output
        assert f"`orchestrator resume {rollout_id}` finishes those hosts" in output
        # What the screen said is true: host1 is out of the pool right now.
        out = [s.server for s in servers(farm) if not s.in_service]
        assert out == ["host1"], servers(farm)
        done = cli(["resume", rollout_id], env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    assert_end_state(farm, store, rollout_id, {"host1": "2", "host2": "2", "host3": "2"})


# Each step of a host's pipeline made to last long enough for a signal to land in it: a sessions probe
# that takes 1.5 s (draining), a snapshot command that takes 1.5 s, the slow update command, checks that
# need four passes 500 ms apart; returning lasts HAProxy's two checks 200 ms apart.
PIPELINE = [H.DRAINING, H.SNAPSHOTTING, H.UPDATING, H.CHECKING, H.RETURNING]


def every_step_slow(farm: LoopbackFarm, tmp_path: Path) -> tuple[Path, Path]:
    book = yaml.safe_load(slow_playbook(tmp_path).read_text())
    book["drain"] = {"timeout": "30s", "sessions": {"probe": "sleep 1.5 && echo 0", "interval": "200ms"}}
    book["stabilize"] = {"interval": "500ms", "successes": 4, "timeout": "30s"}
    playbook = tmp_path / "every-step-slow.yaml"
    playbook.write_text(yaml.safe_dump(book, sort_keys=False))
    inventory = yaml.safe_load(farm.inventory.read_text())
    snapshots = inventory["pools"]["loopback"]["hypervisor"]
    snapshots["create"] = "sleep 1.5 && " + snapshots["create"]
    path = farm.inventory.with_name("every-step-slow-inventory.yaml")  # beside it: relative paths hold
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return playbook, path


@pytest.mark.parametrize("presses", [1, 2], ids=["once", "twice"])
@pytest.mark.parametrize("at", PIPELINE, ids=[s.value for s in PIPELINE])
def test_ctrl_c_at_each_step_of_a_pipeline_leaves_nothing_out_unsaid(
    farm: LoopbackFarm, tmp_path: Path, at: HostState, presses: int
) -> None:
    env = orch_env(tmp_path, f"ctrlc-{at.value}-{presses}", broker=False, reconcile_after=2)
    playbook, inventory = every_step_slow(farm, tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    with cleanup(env) as procs:
        run = start_run(playbook, inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: in_state(store, rollout_id, "host1", at), 60, f"host1 {at.value}", 0.002)
        run.popen.send_signal(signal.SIGINT)
        if presses == 2:
            wait_for(lambda: "Ctrl-C: pausing" in run.output() or None, 10, "the first Ctrl-C's words", 0.01)
            run.popen.send_signal(signal.SIGINT)
        code = run.wait(90)
        output = run.output()
        out_now = {s.server for s in servers(farm) if not s.in_service}
        report(f"ctrl-c x{presses} in {at.value}", f"exit {code}; out of the pool after: {sorted(out_now)}")
        assert code == 130, output
        assert "Traceback" not in output, output
        rollout = store.rollout(rollout_id)
        assert rollout is not None and rollout.state is RolloutState.PAUSED, rollout
        assert rollout.pause_cause is PauseCause.OPERATOR
        if presses == 1:
            assert f"rollout {rollout_id} is paused, every server back in the pool" in output, output
            states = {h.name: h.state for h in store.hosts(rollout_id)}
            assert states == {"host1": H.SUCCEEDED, "host2": H.PENDING, "host3": H.PENDING}, states
            assert not out_now, servers(farm)
        else:
            assert f"Ctrl-C again: leaving now; rollout {rollout_id} is paused" in output, output
            said_out = {
                line.split(":")[0].strip()
                for line in output.splitlines()
                if "OUT of the load balancer pool" in line
            }
            # Nothing is out of the pool without the screen saying so; a host caught returning may
            # already be back, so the screen may name it while HAProxy has it in service.
            assert out_now <= said_out, (out_now, output)
            assert said_out - out_now <= ({"host1"} if at is H.RETURNING else set()), (said_out, out_now)
        done = cli(["resume", rollout_id], env, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
    assert_end_state(farm, store, rollout_id, {"host1": "2", "host2": "2", "host3": "2"})


def pg_ctl(action: str) -> None:
    version = subprocess.run(
        ["ls", "/etc/postgresql"], capture_output=True, text=True, check=True
    ).stdout.split()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version[0], "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of this test's own on the machine's PostgreSQL, dropped afterwards; the server is
    left running whatever the test did to it."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"orch_outage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl("start")  # whatever the test did to the server; fails when it already runs
        deadline = time.monotonic() + 60
        while True:
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # a retry period: the server restarted above may not accept yet
        admin.dispose()


def moment_reached(store: Store, rollout_id: str, farm: LoopbackFarm, at: HostState) -> bool:
    """host1 is at ``at``: for the update, its slow command visibly runs on the host."""
    if at is H.UPDATING:
        return command_running(store, rollout_id, farm.hosts[0])
    return in_state(store, rollout_id, "host1", at)


def host1_journal_closed(store: Store, rollout_id: str) -> None:
    """Every step of host1 ended (none left `running`), each once, and the outage is in the journal."""
    journal = journal_of(store, rollout_id, "host1")
    assert all(s.outcome == "ok" for s in journal), journal_text(journal)
    steps = [s.step for s in journal]
    assert len(steps) == len(set(steps)), journal_text(journal)  # no step ran twice


@pytest.mark.parametrize("broker", [False, True], ids=["in-process", "worker over RabbitMQ"])
@pytest.mark.parametrize(
    "at", [H.DRAINING, H.UPDATING, H.CHECKING], ids=["mid-drain", "mid-update", "mid-check"]
)
def test_a_postgresql_restart_costs_a_pause_not_a_server(
    farm: LoopbackFarm, tmp_path: Path, postgres_url: str, broker: bool, at: HostState
) -> None:
    env = {
        **orch_env(tmp_path, "pgrestart", broker=broker, reconcile_after=2),
        "ORCH_DATABASE_URL": postgres_url,
    }
    playbook, inventory = every_step_slow(farm, tmp_path)
    store = Store(postgres_url)
    with cleanup(env) as procs:
        if broker:
            procs.append(worker(env, tmp_path / "worker.log"))
        run = start_run(playbook, inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store, timeout=60).id
        wait_for(lambda: moment_reached(store, rollout_id, farm, at), 60, f"host1 {at.value}", 0.01)
        started = time.monotonic()
        pg_ctl("restart")
        report("postgresql restarted", f"in {time.monotonic() - started:.1f}s, host1 {at.value}")
        code = run.wait(180)
        output = run.output()
        report("run output", output[-2000:])
        assert code == 0, output
        assert "Traceback" not in output
        after = Store(postgres_url)
        rollout = after.rollout(rollout_id)
        assert rollout is not None and rollout.state is RolloutState.SUCCEEDED, rollout
        host1_journal_closed(after, rollout_id)
        outages = [a for a in after.actions(rollout_id) if a[1] == "store_outage"]
        report("journal", "\n".join(str(a) for a in outages))
        assert outages, "the outage is not in the journal"
    assert_end_state(farm, Store(postgres_url), rollout_id, {"host1": "2", "host2": "2", "host3": "2"})


def test_postgresql_stopped_past_the_budget_pauses_the_rollout_then_it_goes_on(
    farm: LoopbackFarm, tmp_path: Path, postgres_url: str
) -> None:
    env = {
        **orch_env(tmp_path, "pgstop", broker=False, reconcile_after=2),
        "ORCH_DATABASE_URL": postgres_url,
        "ORCH_STORE_OUTAGE_BUDGET": "3",
    }
    playbook = slow_playbook(tmp_path)
    store = Store(postgres_url)
    with cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store, timeout=60).id
        wait_for(lambda: command_running(store, rollout_id, farm.hosts[0]), 60, "host1's slow command", 0.01)
        pg_ctl("stop")
        stopped = time.monotonic()
        try:
            time.sleep(8.0)  # the fault itself: past the 3 s budget
            during = {s.server: s.in_service for s in servers(farm)}
        finally:
            pg_ctl("start")
        report("postgresql stopped", f"for {time.monotonic() - stopped:.1f}s during host1's update")
        code = run.wait(180)
        output = run.output()
        report("run output", output[-2000:])
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "the store does not answer" in output and "the store answers again" in output, output
    assert "PAUSED: the store did not answer" in output and "running again" in output, output
    # While the store was gone, host1 held out of the pool and no other host started.
    assert during == {"host1": False, "host2": True, "host3": True}, during
    after = Store(postgres_url)
    assert "store_outage" in [a[1] for a in after.actions(rollout_id)]
    host1_journal_closed(after, rollout_id)
    assert_end_state(farm, after, rollout_id, {"host1": "2", "host2": "2", "host3": "2"})


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of the test's own for the SQLite store, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_sqlite_store_on_a_full_disk_holds_the_rollout_until_there_is_room(
    farm: LoopbackFarm, tmp_path: Path, small_disk: Path
) -> None:
    """A read-only filesystem cannot be made under an open file (the kernel refuses the remount while
    a writer holds it): tests/integration/test_sqlite_store.py covers it at the store."""
    env = {
        **orch_env(tmp_path, "sqlite-full", broker=False, reconcile_after=2),
        "ORCH_DATABASE_URL": f"sqlite:///{small_disk / 'orch.db'}",
        "ORCH_STORE_OUTAGE_BUDGET": "3",
    }
    playbook = slow_playbook(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    held_for = 8.0  # past the budget: the outage is recorded and the rollout paused for it
    with cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: command_running(store, rollout_id, farm.hosts[0]), 60, "host1's slow command", 0.01)
        filler = fill(small_disk)
        time.sleep(held_for)  # the fault itself: the disk stays full past the 3 s budget
        during = {s.server: s.in_service for s in servers(farm)}
        filler.unlink()
        code = run.wait(180)
        output = run.output()
        report("sqlite on a full disk", output[-1500:])
        assert code == 0, output
        assert "Traceback" not in output and "database is locked" not in output, output
        said = [line for line in output.splitlines() if "the disk under the store is full" in line]
        assert len(said) == 1, output  # one line, not one per retry
        assert "the store answers again" in output, output
        # While the store could not be written, host1 held out of the pool and no other host started.
        assert during == {"host1": False, "host2": True, "host3": True}, during
        actions = [a[1] for a in store.actions(rollout_id)]
        assert "store_outage" in actions, actions
    # host1's command ended while nothing could be written: its exit status, read back from the host,
    # counts; the update goes on from the next step instead of reverting and running it again.
    journal = journal_of(store, rollout_id, "host1")
    assert [s.outcome for s in journal if s.step == "update[0]"] == ["ok"], journal_text(journal)
    assert [applied_lines(h) for h in farm.hosts] == [1, 1, 1]
    assert_end_state(farm, store, rollout_id, {"host1": "2", "host2": "2", "host3": "2"})
