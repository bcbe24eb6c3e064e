"""Faults injected into a real rollout on the loopback farm: real HAProxy, a real sshd per host, the CLI
and the workers as separate processes over RabbitMQ (or the CLI's in-process worker).

Each test ends on the same invariants: every server of the pool plain UP in HAProxy, every host on a
known version (appctl status), and a journal with no step left running. Each prints what was injected,
the outcome and the recovery time measured (from the fault to the rollout's end, or to it going on).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store.db import Store
from tests.e2e.helpers import (
    APPLIED_LOG,
    PLAYBOOKS,
    Proc,
    applied_lines,
    applied_log,
    assert_end_state,
    cleanup,
    cli,
    command_running,
    journal_of,
    journal_text,
    orch_env,
    rabbitmq_start,
    rabbitmq_stop,
    report,
    sample_for,
    servers,
    slow_playbook,
    sshd_connection_pids,
    start_run,
    the_rollout,
    wait_for,
    worker,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=3)  # on a loopback subnet nobody else uses
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


def run_args(playbook: Path, farm: LoopbackFarm) -> list[str]:
    return ["run", str(playbook), "-i", str(farm.inventory)]


def states(store: Store, rollout_id: str) -> dict[str, str]:
    return {h.name: h.state.value for h in store.hosts(rollout_id)}


def finished_at(store: Store, rollout_id: str) -> float:
    rollout = store.rollout(rollout_id)
    assert rollout is not None and rollout.finished_at is not None
    return rollout.finished_at


def resumes(store: Store, rollout_id: str) -> str:
    found = [f"{a[2]}: {a[3]}" for a in store.actions(rollout_id) if a[1] == "resume"]
    return "; ".join(found) or "no resume (the broker redelivered the tick)"


def assert_reapplied_once(store: Store, rollout_id: str, host: str, steps: int) -> None:
    """The interrupted attempt is in the journal, then the whole update again, each step once."""
    journal = journal_of(store, rollout_id, host)
    update0 = [s for s in journal if s.step == "update[0]"]
    assert [s.outcome for s in update0] == ["interrupted", "ok"], journal_text(journal)
    assert "reverted" in update0[0].detail, update0[0].detail
    for i in range(1, steps):
        assert [s.outcome for s in journal if s.step == f"update[{i}]"] == ["ok"], journal_text(journal)


@dataclass
class Fault:
    store: Store
    rollout_id: str
    code: int
    output: str
    at: float  # wall clock of the fault


def kill_worker_mid_command(farm: LoopbackFarm, tmp_path: Path, playbook: Path) -> Fault:
    """SIGKILL the worker while host2's update[0] runs, then start another worker; wait for `run`."""
    env = orch_env(tmp_path, "kill-worker", broker=True, reconcile_after=2)
    store = Store(env["ORCH_DATABASE_URL"])
    host2 = farm.hosts[1]
    with cleanup(env) as procs:
        first = worker(env, tmp_path / "worker1.log")
        procs.append(first)
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: command_running(store, rollout_id, host2), 40, "host2's update[0] to run")
        killed = time.time()
        first.kill()
        procs.append(worker(env, tmp_path / "worker2.log"))
        code = run.wait(60)
    return Fault(store, rollout_id, code, run.output(), killed)


def test_worker_killed_mid_command_is_reverted_and_reapplied_exactly_once(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    k = kill_worker_mid_command(farm, tmp_path, slow_playbook(tmp_path))
    store, rollout_id = k.store, k.rollout_id
    journal = journal_of(store, rollout_id, "host2")
    took_over = next((s.ended_at for s in journal if s.outcome == "interrupted"), None) or float("nan")
    done = finished_at(store, rollout_id)
    report(
        "SIGKILL of the worker during host2's update[0], new worker started",
        f"exit {k.code}; {states(store, rollout_id)}; host2 journal: {journal_text(journal)}; "
        f"applied.log lines {[applied_lines(h) for h in farm.hosts]}; reconciler: "
        f"{resumes(store, rollout_id)}; recovery: new worker took host2 over "
        f"{took_over - k.at:.2f}s after the kill, rollout done {done - k.at:.2f}s after it",
    )

    assert k.code == 0, k.output
    assert set(states(store, rollout_id).values()) == {HostState.SUCCEEDED}
    assert_reapplied_once(store, rollout_id, "host2", steps=3)
    for name in ("host1", "host3"):
        assert all(s.outcome == "ok" for s in journal_of(store, rollout_id, name))
    # The interrupted attempt's line went with the revert: the update ran to its end once per host.
    assert [applied_lines(h) for h in farm.hosts] == [1, 1, 1]
    assert_end_state(farm, store, rollout_id, {h.name: "2" for h in farm.hosts})


def test_interrupted_command_does_not_finish_on_top_of_the_reapplied_update(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    # Evidence at the start AND at the end of the command; the sleep outlasts the new worker's takeover.
    command = f"echo started >> {APPLIED_LOG} && sleep 6 && echo finished >> {APPLIED_LOG}"
    k = kill_worker_mid_command(farm, tmp_path, slow_playbook(tmp_path, command))
    logs = {h.name: applied_log(h) for h in farm.hosts}
    first = next((s for s in journal_of(k.store, k.rollout_id, "host2") if s.step == "update[0]"), None)
    report(
        "SIGKILL of the worker during host2's 6 s update[0] that writes 'started' then 'finished'",
        f"exit {k.code}; {states(k.store, k.rollout_id)}; update[0]#1: {first.detail if first else '-'}; "
        f"applied.log per host: {logs}; recovery: rollout done "
        f"{finished_at(k.store, k.rollout_id) - k.at:.2f}s after the kill",
    )

    assert k.code == 0, k.output
    assert_end_state(farm, k.store, k.rollout_id, {h.name: "2" for h in farm.hosts})
    assert_reapplied_once(k.store, k.rollout_id, "host2", steps=3)
    assert first is not None and "stopped group" in first.detail, first
    assert logs == {h.name: ["started", "finished"] for h in farm.hosts}, (
        "the interrupted command went on running on host2 and finished after the revert"
    )


def test_rabbitmq_restarted_mid_rollout(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "rabbitmq", broker=True, reconcile_after=2)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = slow_playbook(tmp_path)
    host2 = farm.hosts[1]
    with cleanup(env) as procs:
        first = worker(env, tmp_path / "worker1.log")
        procs.append(first)
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: command_running(store, rollout_id, host2), 40, "host2's update[0] to run")
        try:
            stopped = time.time()
            rabbitmq_stop()
            down = time.time()
            rabbitmq_start()
        finally:
            rabbitmq_start()  # the machine's other tests need it, whatever happened here
        back = time.time()
        survived = first.alive()
        if not survived:
            procs.append(worker(env, tmp_path / "worker2.log"))
        code = run.wait(60)
        survived_to_the_end = first.alive()
    output = run.output()
    # Going on: the first tick that acted after the broker came back (a step started, or the
    # reconciler restarting a tick chain a publish lost during the outage).
    later = [s.started_at for s in store.steps(rollout_id) if s.started_at > back]
    later += [a[0] for a in store.actions(rollout_id) if a[1] == "resume" and a[0] > back]
    going_on = min(later) if later else float("nan")
    done = finished_at(store, rollout_id)
    report(
        "RabbitMQ stopped (rabbitmqctl stop) during host2's update[0], then started again",
        f"exit {code}; {states(store, rollout_id)}; worker "
        f"{'survived the restart' if survived else 'died with the broker and was restarted'}"
        f"{'' if survived_to_the_end or not survived else ' (but exited later)'}; broker down for "
        f"{back - down:.2f}s (stop took {down - stopped:.2f}s); recovery: first new step "
        f"{going_on - back:.2f}s after the broker was back, rollout done "
        f"{done - back:.2f}s after it ({done - stopped:.2f}s after the stop); reconciler: "
        f"{resumes(store, rollout_id)}; "
        f"host2 journal: {journal_text(journal_of(store, rollout_id, 'host2'))}",
    )

    assert code == 0, output
    assert set(states(store, rollout_id).values()) == {HostState.SUCCEEDED}
    assert [applied_lines(h) for h in farm.hosts] == [1, 1, 1]
    assert_end_state(farm, store, rollout_id, {h.name: "2" for h in farm.hosts})


def drop_ssh_mid_command(farm: LoopbackFarm, tmp_path: Path, playbook: Path) -> Fault:
    """Kill host2's sshd connection processes while its update[0] runs (the command itself is left
    running, as a network drop leaves it); wait for `run`."""
    env = orch_env(tmp_path, "ssh-drop", broker=True, reconcile_after=2)
    store = Store(env["ORCH_DATABASE_URL"])
    host2 = farm.hosts[1]
    sshd = farm._sshds[1]
    assert sshd.address == host2.address
    with cleanup(env) as procs:
        procs.append(worker(env, tmp_path / "worker.log"))
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: command_running(store, rollout_id, host2), 40, "host2's update[0] to run")
        dropped = time.time()
        sessions = sshd_connection_pids(sshd.session_pids())
        assert sessions, "host2's sshd has no connection process to kill"
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        code = run.wait(60)
    return Fault(store, rollout_id, code, run.output(), dropped)


def assert_host2_rolled_back_and_halted(k: Fault) -> None:
    assert k.code == 1, k.output
    rollout = k.store.rollout(k.rollout_id)
    assert rollout is not None and rollout.state is RolloutState.HALTED, rollout
    assert states(k.store, k.rollout_id) == {
        "host1": HostState.SUCCEEDED,
        "host2": HostState.ROLLED_BACK,
        "host3": HostState.SKIPPED,
    }
    journal = journal_of(k.store, k.rollout_id, "host2")
    update0 = [s for s in journal if s.step == "update[0]"]
    assert [s.outcome for s in update0] == ["failed"], journal_text(journal)
    assert "lost" in update0[0].detail and "may have partly run" in update0[0].detail, update0[0].detail
    assert [s.step for s in journal][-3:] == ["revert", "verify_old", "restore"], journal_text(journal)
    assert all(s.outcome == "ok" for s in journal[-3:]), journal_text(journal)
    assert not journal_of(k.store, k.rollout_id, "host3"), "host3 must not be touched after the halt"


def test_ssh_connection_dropped_mid_command_reverts_the_host_and_halts(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    k = drop_ssh_mid_command(farm, tmp_path, slow_playbook(tmp_path))
    journal = journal_of(k.store, k.rollout_id, "host2")
    done = finished_at(k.store, k.rollout_id)
    report(
        "SSH connection of host2 dropped during its update[0] (its sshd connection processes SIGKILLed; "
        "the command left running, as a network drop leaves it)",
        f"exit {k.code}; {states(k.store, k.rollout_id)}; host2 journal: {journal_text(journal)}; "
        f"update[0] failed with: {next((s.detail for s in journal if s.step == 'update[0]'), '-')}; "
        f"recovery: host2 back in the pool on v1 and the rollout halted {done - k.at:.2f}s after the drop",
    )

    assert_host2_rolled_back_and_halted(k)
    # host2's half-run command was undone by the revert; host3 never started.
    assert [applied_lines(h) for h in farm.hosts] == [1, 0, 0]
    assert_end_state(farm, k.store, k.rollout_id, {"host1": "2", "host2": "1", "host3": "1"})


def test_command_cut_off_by_a_dropped_connection_does_not_finish_after_the_revert(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    command = f"echo started >> {APPLIED_LOG} && sleep 4 && echo finished >> {APPLIED_LOG}"
    k = drop_ssh_mid_command(farm, tmp_path, slow_playbook(tmp_path, command))
    # A deliberate window: had the cut-off command not been stopped, it would write 'finished' within
    # 4 s of the drop. Watch host2's log until 6 s after it, every sample empty (the revert took it).
    host2 = farm.hosts[1]
    during = sample_for(max(0.5, k.at + 6 - time.time()), lambda: applied_log(host2))
    logs = {h.name: applied_log(h) for h in farm.hosts}
    revert = next((s for s in journal_of(k.store, k.rollout_id, "host2") if s.step == "revert"), None)
    report(
        "SSH connection of host2 dropped during its 4 s update[0] that writes 'started' then 'finished'",
        f"exit {k.code}; {states(k.store, k.rollout_id)}; revert: {revert.detail if revert else '-'}; "
        f"applied.log per host 6 s after the drop: {logs} ({len(during)} samples of host2's before); "
        f"recovery: rollout halted "
        f"{finished_at(k.store, k.rollout_id) - k.at:.2f}s after the drop",
    )

    assert_host2_rolled_back_and_halted(k)
    assert_end_state(farm, k.store, k.rollout_id, {"host1": "2", "host2": "1", "host3": "1"})
    assert revert is not None and "stopped group" in revert.detail, revert
    assert len(during) >= 5 and all(lines == [] for lines in during), during
    assert logs == {"host1": ["started", "finished"], "host2": [], "host3": []}, (
        "the cut-off command went on running on host2 and wrote into the reverted release tree"
    )


def test_haproxy_socket_unreachable_at_start_refuses_and_changes_nothing(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "socket-at-start", broker=False, reconcile_after=2)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = PLAYBOOKS / "loopback-v2.yaml"
    sock = farm.haproxy.socket_path
    moved = sock.with_name(sock.name + ".moved")
    sock.rename(moved)
    try:
        started = time.monotonic()
        refused = cli(run_args(playbook, farm), env)
        refused_in = time.monotonic() - started
    finally:
        moved.rename(sock)
    reason = [line for line in refused.stderr.splitlines() if line.strip()]
    report(
        "HAProxy runtime socket renamed away before `run`",
        f"exit {refused.returncode} in {refused_in:.2f}s: {' | '.join(reason)}",
    )

    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert len(reason) == 1, refused.stderr
    assert str(sock) in reason[0], reason[0]
    assert store.rollouts() == [], "a refused run must leave no rollout (and so no pool lock)"
    assert all(s.in_service for s in servers(farm)), servers(farm)
    assert all("version 1)" in v for v in farm.versions().values()), farm.versions()

    # The socket is back: the pool's lock is free and the same command now goes through.
    started = time.monotonic()
    later = cli(run_args(playbook, farm), env)
    report(
        "HAProxy runtime socket restored",
        f"a later run: exit {later.returncode} in {time.monotonic() - started:.2f}s",
    )
    assert later.returncode == 0, later.stdout + later.stderr
    assert_end_state(farm, store, the_rollout(store).id, {h.name: "2" for h in farm.hosts})


def _host_row(status_output: str, host: str, state: HostState) -> bool:
    return re.search(rf"\b{host}\s*│\s*\d+\s*│\s*{state.value}\b", status_output) is not None


def test_haproxy_socket_unreachable_mid_rollout_pauses_then_completes(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "socket-mid", broker=True, reconcile_after=2)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = slow_playbook(tmp_path)
    sock = farm.haproxy.socket_path
    moved = sock.with_name(sock.name + ".moved")
    host2 = farm.hosts[1]
    with cleanup(env) as procs:
        procs.append(worker(env, tmp_path / "worker.log"))
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        # host2 is out of the pool: each poll of its update re-asserts that on the load balancer, so the
        # socket's loss is found within a poll, whatever step host2 is in.
        wait_for(lambda: command_running(store, rollout_id, host2), 40, "host2's update[0] to run")
        sock.rename(moved)
        gone = time.time()
        try:
            wait_for(
                lambda: store.rollout(rollout_id).state is RolloutState.PAUSED,  # type: ignore[union-attr]
                20,
                "the rollout to pause",
            )
            paused = time.time()
            status = cli(["status", rollout_id], env)
            time.sleep(max(0.0, gone + 3 - time.time()))  # the fault's duration: the socket is away 3 s
        finally:
            moved.rename(sock)
        back = time.time()
        wait_for(
            lambda: store.rollout(rollout_id).state is not RolloutState.PAUSED,  # type: ignore[union-attr]
            20,
            "the rollout to go on",
        )
        going_on = time.time()
        code = run.wait(60)
    output = run.output()
    report(
        f"HAProxy runtime socket renamed away while host2 ran its update, back after {back - gone:.2f}s",
        f"exit {code}; {states(store, rollout_id)}; paused {paused - gone:.2f}s after the socket went; "
        f"recovery: running again {going_on - back:.2f}s after the socket was back, rollout done "
        f"{finished_at(store, rollout_id) - back:.2f}s after it; status while paused:\n{status.stdout}",
    )

    assert status.returncode == 0, status.stdout + status.stderr
    assert "paused" in status.stdout
    assert _host_row(status.stdout, "host1", HostState.SUCCEEDED), status.stdout
    held = (HostState.UPDATING, HostState.CHECKING, HostState.RETURNING)
    assert any(_host_row(status.stdout, "host2", state) for state in held), status.stdout
    assert _host_row(status.stdout, "host3", HostState.PENDING), status.stdout
    assert "load balancer unreachable" in status.stdout, status.stdout
    assert f"PAUSED: load balancer unreachable: HAProxy runtime socket {sock}" in output, output
    assert "running again" in output, output
    assert code == 0, output
    assert set(states(store, rollout_id).values()) == {HostState.SUCCEEDED}
    assert [applied_lines(h) for h in farm.hosts] == [1, 1, 1]
    assert_end_state(farm, store, rollout_id, {h.name: "2" for h in farm.hosts})


def test_cli_with_in_process_worker_killed_then_resumed(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "kill-cli", broker=False, reconcile_after=2)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = slow_playbook(tmp_path)
    host2 = farm.hosts[1]
    with cleanup(env) as procs:
        run: Proc = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: command_running(store, rollout_id, host2), 40, "host2's update[0] to run")
        killed = time.time()
        run.kill()
    left = states(store, rollout_id)
    out = [s.server for s in servers(farm) if not s.in_service]
    resumed = cli(["resume", rollout_id, "--as", "fault-test"], env)
    actions = store.actions(rollout_id)
    report(
        "SIGKILL of `run` (in-process worker) during host2's update[0], then `orchestrator resume`",
        f"left behind: {left}, out of the pool: {out}; resume exit {resumed.returncode}; "
        f"{states(store, rollout_id)}; host2 journal: "
        f"{journal_text(journal_of(store, rollout_id, 'host2'))}; recovery: rollout done "
        f"{finished_at(store, rollout_id) - killed:.2f}s after the kill (resume started at once)",
    )

    assert left["host2"] == HostState.UPDATING, left
    assert out == ["host2"], "the killed rollout left host2 out of the pool: resume must return it"
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert set(states(store, rollout_id).values()) == {HostState.SUCCEEDED}
    assert any(a[1] == "resume" and a[2] == "fault-test" and "host2" in a[3] for a in actions), actions
    assert_reapplied_once(store, rollout_id, "host2", steps=3)
    assert [applied_lines(h) for h in farm.hosts] == [1, 1, 1]
    assert_end_state(farm, store, rollout_id, {h.name: "2" for h in farm.hosts})
