"""Operator controls end to end on the loopback farm (4 hosts, real HAProxy, a real sshd per host): approvals,
rollback_all, the capacity guard, a maintenance window, session-aware drains, pause/resume and abort.

`run` is a real process with its in-process worker (no broker); operator commands are separate CLI
processes that only change the store, and the run's reconciler (every 0.5 s here) carries them out.
Each test prints its figures (requests sent/failed, states, timings) to the real stdout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.app.submit import load_spec
from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.lab.measure import under_load
from orchestrator.model.plan import expected_host_seconds
from orchestrator.model.records import Step
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store.db import Store
from tests.e2e.helpers import (
    ServerWatch,
    actions_text,
    all_up,
    cleanup,
    cli,
    host_states,
    journal_of,
    journal_text,
    lb,
    orch_env,
    orchestrator,
    plan_window,
    report,
    rollout_of,
    sample_for,
    set_host_vars,
    start_run,
    state_text,
    the_rollout,
    versions,
    wait_for,
    wait_rollout,
    write_playbook,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

H = HostState
R = RolloutState
ALL = {"host1", "host2", "host3", "host4"}


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=4)
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


def assert_all_in_service(farm: LoopbackFarm) -> None:
    wait_for(lambda: all_up(farm), 15, "every server of the pool to be plain UP in HAProxy", 0.1)


def test_canary_awaits_approval_and_approve_lets_it_finish(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "approve", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = write_playbook(tmp_path, "approve", strategy={"batches": [1, 2, 1], "approve_after": [1]})
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        waiting = wait_rollout(store, rollout_id, {R.AWAITING_APPROVAL}, 40)
        asked_at = time.time()

        # A deliberate window of four reconciler rounds: nothing may start while it waits, in any sample.
        def held_now() -> tuple[dict[str, HostState], list[Step]]:
            return host_states(store, rollout_id), [s for s in store.steps(rollout_id) if s.host != "host1"]

        held_samples = sample_for(2.0, held_now)
        held_text = state_text(store, rollout_id)
        held_versions = versions(farm)
        before = time.time()
        approved = cli(["approve", rollout_id, "--as", "alice"], env)
        after = time.time()
        code = run.wait(60)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    approvals = [(at, actor) for at, action, actor, _ in store.actions(rollout_id) if action == "approve"]
    report(
        "canary, approve --as alice",
        f"{measured.load.summary()}; min in service {measured.min_in_service}/4; waited for approval "
        f"{before - asked_at:.1f}s; held: {held_text}; "
        f"run exit {code}, {final.state.value} in {measured.seconds:.1f}s; actions: "
        f"{actions_text(store, rollout_id)}",
    )

    assert "approve" in waiting.reason, waiting.reason
    assert len(held_samples) >= 10, len(held_samples)
    for held, held_journal in held_samples:
        assert held == {"host1": H.SUCCEEDED, "host2": H.PENDING, "host3": H.PENDING, "host4": H.PENDING}
        assert not held_journal, journal_text(held_journal)
    assert held_versions == {"host1": "2", "host2": "1", "host3": "1", "host4": "1"}, held_versions
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert code == 0, output
    assert final.state is R.SUCCEEDED, final.reason
    assert versions(farm) == dict.fromkeys(ALL, "2")
    assert len(approvals) == 1 and approvals[0][1] == "alice", approvals
    assert before - 1 <= approvals[0][0] <= after + 1, (approvals, before, after)
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


def test_canary_rejected_halts_with_the_other_hosts_untouched(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "reject", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = write_playbook(tmp_path, "reject", strategy={"batches": [1, 2, 1], "approve_after": [1]})
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_rollout(store, rollout_id, {R.AWAITING_APPROVAL}, 40)
        before = time.time()
        rejected = cli(["reject", rollout_id, "--as", "bob", "--reason", "canary latency too high"], env)
        after = time.time()
        code = run.wait(30)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    rejections = [(at, actor) for at, action, actor, _ in store.actions(rollout_id) if action == "reject"]
    report(
        "canary, reject --as bob",
        f"{measured.load.summary()}; run exit {code}, {final.state.value} ({final.reason}); "
        f"{state_text(store, rollout_id)}; actions: {actions_text(store, rollout_id)}",
    )

    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert code == 1, output
    assert final.state is R.HALTED and "bob" in final.reason, final.reason
    assert host_states(store, rollout_id) == {
        "host1": H.SUCCEEDED,
        "host2": H.SKIPPED,
        "host3": H.SKIPPED,
        "host4": H.SKIPPED,
    }
    assert versions(farm) == {"host1": "2", "host2": "1", "host3": "1", "host4": "1"}
    assert not [s for s in store.steps(rollout_id) if s.host != "host1"]
    assert len(rejections) == 1 and rejections[0][1] == "bob", rejections
    assert before - 1 <= rejections[0][0] <= after + 1
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


def test_rollback_all_after_a_failure_in_batch_2_reverts_host1_from_its_snapshot(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "rollback-all", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = write_playbook(
        tmp_path,
        "rollback-all",
        artifact_var=True,
        strategy={"batches": [1, 1, 1, 1], "on_failure": "rollback_all"},
        stabilize={"interval": "200ms", "successes": 3, "timeout": "5s"},
    )
    set_host_vars(farm, {"host2": {"artifact": "app-2-broken.tar.gz"}}, artifact="app-2.tar.gz")
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        code = run.wait(90)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    host1, host2 = journal_of(store, rollout_id, "host1"), journal_of(store, rollout_id, "host2")
    report(
        "rollback_all, host2 broken",
        f"{measured.load.summary()}; min in service {measured.min_in_service}/4; run exit {code}, "
        f"{final.state.value} in {measured.seconds:.1f}s ({final.reason}); {state_text(store, rollout_id)}; "
        f"host1 journal: {journal_text(host1)}",
    )

    assert code == 1, output
    assert final.state is R.ROLLED_BACK, final.reason
    assert host_states(store, rollout_id) == {
        "host1": H.ROLLED_BACK,
        "host2": H.ROLLED_BACK,
        "host3": H.SKIPPED,
        "host4": H.SKIPPED,
    }
    # host1: updated and returned, then (after host2 was reverted by its own failure) rolled back from its
    # snapshot through drain, maint, revert, the old version's checks and return.
    steps = [s.step for s in host1]
    returned = steps.index("return")
    assert steps[returned + 1 :] == ["drain", "maint", "revert", "verify_old", "restore"], steps
    assert all(s.outcome == "ok" for s in host1), journal_text(host1)
    snapshot = next(s.detail for s in host1 if s.step == "snapshot").split()[1]  # "snapshot NAME of host1"
    assert snapshot in steps_detail(host1, "revert"), (snapshot, steps_detail(host1, "revert"))
    host2_restored = max(s.ended_at or 0 for s in host2 if s.step == "restore")
    assert [s.step for s in host2 if s.outcome == "failed"] == ["checks"], journal_text(host2)
    assert host1[returned + 1].started_at >= host2_restored, "host1 must be rolled back after host2's revert"
    assert not [s for s in store.steps(rollout_id) if s.host in ("host3", "host4")]
    assert versions(farm) == dict.fromkeys(ALL, "1")
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


def steps_detail(steps: list[Step], name: str) -> str:
    return "; ".join(s.detail for s in steps if s.step == name)


def capacity_playbook(tmp_path: Path, name: str) -> Path:
    return write_playbook(
        tmp_path, name, strategy={"batches": [1], "max_unavailable": 1, "capacity_timeout": "5s"}
    )


def put_host3_in_maint(farm: LoopbackFarm) -> None:
    lb(farm).maint("host3")
    wait_for(
        lambda: not next(s for s in lb(farm).servers() if s.server == "host3").in_service,
        10,
        "host3 to leave service",
    )


def test_capacity_guard_drains_nothing_while_another_server_is_down(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "capacity", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = capacity_playbook(tmp_path, "capacity")
    put_host3_in_maint(farm)
    try:
        with ServerWatch(farm) as watch, cleanup(env) as procs:
            started = time.monotonic()
            run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
            procs.append(run)
            rollout_id = the_rollout(store).id
            code = run.wait(60)
            output = run.output()
            ended = time.monotonic()
    finally:
        lb(farm).ready("host3")
    final = rollout_of(store, rollout_id)
    error = store.host(rollout_id, "host1").progress.error
    left = watch.out_of_service({"host1", "host2", "host4"})
    report(
        "capacity guard, host3 in maint, max_unavailable 1 of 4",
        f"run exit {code} after {ended - started:.1f}s, {final.state.value}; host1: {error}; "
        f"{len(watch.samples())} HAProxy samples, servers ever out of service: {sorted(watch.ever_out())}",
    )

    assert code == 1, output
    assert final.state is R.HALTED, final.reason
    assert "capacity" in error and "5s" in error, error
    assert host_states(store, rollout_id) == {
        "host1": H.FAILED,
        "host2": H.SKIPPED,
        "host3": H.SKIPPED,
        "host4": H.SKIPPED,
    }
    assert not store.steps(rollout_id), journal_text(store.steps(rollout_id))
    assert len(watch.samples()) > 20
    assert not left, left[:3]
    assert versions(farm) == dict.fromkeys(ALL, "1")
    assert_all_in_service(farm)


def test_capacity_guard_waits_and_proceeds_once_the_other_server_is_back(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "capacity-back", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = capacity_playbook(tmp_path, "capacity-back")
    put_host3_in_maint(farm)
    try:
        with ServerWatch(farm) as watch, cleanup(env) as procs:
            started = time.monotonic()
            run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
            procs.append(run)
            rollout_id = the_rollout(store).id
            wait_for(
                lambda: "capacity" in store.host(rollout_id, "host1").progress.detail,
                30,
                "host1 to wait for capacity",
            )
            # A deliberate window: host3 stays down 2 s more, and in every sample host1 still waits for
            # capacity with nothing journaled (HAProxy's samples of the same window are checked below).
            waited = sample_for(
                2.0, lambda: (store.host(rollout_id, "host1").progress.detail, store.steps(rollout_id))
            )
            back = time.time()
            lb(farm).ready("host3")
            code = run.wait(60)
            output = run.output()
            ended = time.monotonic()
    finally:
        lb(farm).ready("host3")
    final = rollout_of(store, rollout_id)
    first_drain = min(s.started_at for s in store.steps(rollout_id))
    left_before = watch.out_of_service({"host1", "host2", "host4"}, until=back)
    report(
        "capacity guard, host3 back after 2 s",
        f"run exit {code}, {final.state.value} in {ended - started:.1f}s; host1 drained "
        f"{first_drain - back:.2f}s after host3 was set ready; min in service "
        f"{watch.min_in_service()}/4 over {len(watch.samples())} samples",
    )

    assert len(waited) >= 10, len(waited)
    for detail, journal in waited:
        assert "capacity" in detail and not journal, (detail, journal_text(journal))
    assert code == 0, output
    assert final.state is R.SUCCEEDED, final.reason
    assert first_drain >= back, "nothing may be drained before host3 is back"
    assert not left_before, left_before[:3]
    assert watch.min_in_service() >= 3  # the floor: 4 - max_unavailable
    assert versions(farm) == dict.fromkeys(ALL, "2")
    assert_all_in_service(farm)


def sessions_playbook(tmp_path: Path, name: str, timeout: str) -> Path:
    return write_playbook(
        tmp_path,
        name,
        drain={
            "timeout": timeout,
            "sessions": {
                "probe": "cat {{ vars.app_dir }}/../sessions",
                "interval": "500ms",
                "warn": "echo warned >> {{ vars.app_dir }}/../warnings",
                "warn_every": "1s",
                "on_timeout": "postpone",
            },
        },
    )


def user_sessions(farm: LoopbackFarm, busy: str) -> None:
    for host in farm.hosts:
        (host.app_dir.parent / "sessions").write_text("3\n" if host.name == busy else "0\n")


def warnings(farm: LoopbackFarm) -> dict[str, int]:
    found = {}
    for host in farm.hosts:
        path = host.app_dir.parent / "warnings"
        found[host.name] = len(path.read_text().splitlines()) if path.exists() else 0
    return found


def test_sessions_that_never_end_postpone_host1_then_skip_it(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "sessions", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = sessions_playbook(tmp_path, "sessions", "3s")
    user_sessions(farm, busy="host1")
    with (
        under_load(farm.url, farm.haproxy.socket_path) as figures,
        ServerWatch(farm) as watch,
        cleanup(env) as procs,
    ):
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        code = run.wait(90)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    host1 = journal_of(store, rollout_id, "host1")
    host4 = journal_of(store, rollout_id, "host4")
    warned = warnings(farm)
    first_restore = next(s for s in host1 if s.step == "restore")
    second_drain = [s for s in host1 if s.step == "drain"][-1]
    host1_out = watch.out_of_service(
        {"host1"}, since=(first_restore.ended_at or 0) + 0.2, until=second_drain.started_at - 0.2
    )
    report(
        "sessions: host1 keeps 3 user sessions, drain 3s, on_timeout postpone",
        f"{measured.load.summary()}; run exit {code}, {final.state.value} in {measured.seconds:.1f}s "
        f"({final.reason}); {state_text(store, rollout_id)}; warnings per host {warned}; host1 journal: "
        f"{journal_text(host1)}",
    )

    assert code == 1, output  # partial is not a success
    assert final.state is R.PARTIAL, final.reason
    assert "host1" in final.reason, final.reason
    assert host_states(store, rollout_id) == {
        "host1": H.SKIPPED,
        "host2": H.SUCCEEDED,
        "host3": H.SUCCEEDED,
        "host4": H.SUCCEEDED,
    }
    drains = [s for s in host1 if s.step == "drain"]
    assert [s.outcome for s in drains] == ["postponed", "skipped"], journal_text(host1)
    assert not [s for s in host1 if s.step in ("maint", "snapshot") or s.step.startswith("update")]
    # Moved to the end: tried again only after host4, the last of the others, was back in service.
    assert drains[1].started_at >= max(s.ended_at or 0 for s in host4 if s.step == "return")
    assert not host1_out, f"host1 must be in service while postponed: {host1_out[:3]}"
    assert warned["host1"] >= 2 and warned["host2"] == warned["host3"] == warned["host4"] == 0, warned
    assert versions(farm) == {"host1": "1", "host2": "2", "host3": "2", "host4": "2"}
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


def test_sessions_that_end_while_host1_waits_let_it_be_updated(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "sessions-end", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = sessions_playbook(tmp_path, "sessions-end", "20s")
    user_sessions(farm, busy="host1")
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id

        def counted_3() -> bool:
            status = store.host(rollout_id, "host1")
            return status.state is H.DRAINING and status.progress.user_sessions == 3

        wait_for(counted_3, 30, "host1 to drain and count 3 user sessions")
        warned = warnings(farm)["host1"]
        wait_for(lambda: warnings(farm)["host1"] > warned, 10, "one more warning while the sessions last")
        (farm.hosts[0].app_dir.parent / "sessions").write_text("0\n")
        ended_at = time.time()
        code = run.wait(90)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    host1 = journal_of(store, rollout_id, "host1")
    drain = next(s for s in host1 if s.step == "drain")
    report(
        "sessions: host1's sessions end while it waits",
        f"{measured.load.summary()}; run exit {code}, {final.state.value} in {measured.seconds:.1f}s; "
        f"host1 left draining {(drain.ended_at or 0) - ended_at:.2f}s after its sessions ended "
        f"({drain.detail}); warnings per host {warnings(farm)}",
    )

    assert code == 0, output
    assert final.state is R.SUCCEEDED, final.reason
    assert [s.step for s in host1].count("drain") == 1 and drain.outcome == "ok", journal_text(host1)
    assert (drain.ended_at or 0) >= ended_at
    assert warnings(farm)["host1"] >= 1
    assert versions(farm) == dict.fromkeys(ALL, "2")
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


SLOW_STEP = {"run": "sleep 3", "timeout": "20s"}


def test_pause_lets_the_host_in_flight_finish_and_resume_continues(
    farm: LoopbackFarm, tmp_path: Path
) -> None:
    env = orch_env(tmp_path, "pause", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = write_playbook(tmp_path, "pause", steps_before=[SLOW_STEP])
    with (
        under_load(farm.url, farm.haproxy.socket_path) as figures,
        ServerWatch(farm) as watch,
        cleanup(env) as procs,
    ):
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: host_states(store, rollout_id)["host1"] is H.UPDATING, 30, "host1 to update")
        paused = cli(["pause", rollout_id, "--as", "carol"], env)
        wait_for(lambda: host_states(store, rollout_id)["host1"] is H.SUCCEEDED, 30, "host1 to finish")
        quiet_from = time.time()
        # A deliberate window: the next host must not start, whatever the reconciler does, in any sample.
        held_samples = sample_for(
            4.0,
            lambda: (
                state_text(store, rollout_id),
                rollout_of(store, rollout_id),
                [s for s in store.steps(rollout_id) if s.host != "host1"],
            ),
        )
        quiet_until = time.time()
        held = held_samples[-1][0]
        resumed = orchestrator(["resume", rollout_id, "--as", "carol"], env, tmp_path / "resume.log")
        procs.append(resumed)
        code = run.wait(60)
        resume_code = resumed.wait(30)
        output = run.output() + resumed.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    out_while_paused = watch.out_of_service(ALL, since=quiet_from, until=quiet_until)
    report(
        "pause during host1's update, resume",
        f"{measured.load.summary()}; while paused ({quiet_until - quiet_from:.1f}s): {held}, "
        f"{len(watch.samples(quiet_from, quiet_until))} HAProxy samples all 4 in service: "
        f"{not out_while_paused}; run exit {code}, resume exit {resume_code}, {final.state.value}; "
        f"actions: {actions_text(store, rollout_id)}",
    )

    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert len(held_samples) >= 20, len(held_samples)
    for held, held_rollout, held_steps in held_samples:
        assert held_rollout.state is R.PAUSED and "carol" in held_rollout.reason, held_rollout
        assert held == "host1 succeeded, host2 pending, host3 pending, host4 pending", held
        assert not held_steps, journal_text(held_steps)
    assert len(watch.samples(quiet_from, quiet_until)) > 10
    assert not out_while_paused, out_while_paused[:3]
    assert code == 0 and resume_code == 0, output
    assert final.state is R.SUCCEEDED, final.reason
    assert versions(farm) == dict.fromkeys(ALL, "2")
    assert measured.load.failed == 0, measured.load.failures()[:5]
    actors = {(action, actor) for _, action, actor, _ in store.actions(rollout_id)}
    assert ("pause", "carol") in actors, actors
    assert ("unpause", "carol") in actors, f"carol's resume is not audited: {actors}"
    assert_all_in_service(farm)


def running_step(store: Store, rollout_id: str, host: str, step: str) -> bool:
    return any(s.step == step and s.outcome == "running" for s in journal_of(store, rollout_id, host))


def reasserted_by_reconciler(store: Store, rollout_id: str, host: str) -> str | None:
    """The reconciler's guard's action row that re-asserted ``host`` on the load balancer, if any."""
    return next(
        (
            detail
            for _, action, actor, detail in store.actions(rollout_id)
            if action == "lb_reasserted" and actor == "reconciler" and f"re-asserted {host} " in detail
        ),
        None,
    )


def test_reconciler_leaves_a_host_waiting_at_the_gate_alone(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "reconciler", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    # host1's first update step blocks its tick for 5 s: only the reconciler's rounds watch HAProxy then.
    playbook = write_playbook(tmp_path, "reconciler", steps_before=[{"run": "sleep 5", "timeout": "20s"}])
    with cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: running_step(store, rollout_id, "host1", "update[0]"), 30, "host1's update[0]")
        assert cli(["pause", rollout_id, "--as", "carol"], env).returncode == 0
        # The positive control: the reconciler runs its rounds in this `run`. Put host1, held out for its
        # update, back to ready behind the rollout's back; the next round (not host1's blocked tick)
        # must set it to maint again, and say so.
        lb(farm).ready("host1")
        guarded = wait_for(
            lambda: reasserted_by_reconciler(store, rollout_id, "host1"), 4, "the reconciler to guard host1"
        )
        wait_for(lambda: host_states(store, rollout_id)["host1"] is H.SUCCEEDED, 30, "host1 to finish")
        wait_for(lambda: store.host(rollout_id, "host2").token, 10, "host2's tick chain to start")
        since = time.time()
        # A deliberate window of six reconciler rounds while host2 waits for the pause to be lifted: every
        # sample must show it still waiting, and no round may have restarted it.
        seen = sample_for(3.0, lambda: store.host(rollout_id, "host2"))
        restarts = [
            detail
            for at, action, _, detail in store.actions(rollout_id)
            if at >= since and action == "resume" and "host2" in detail
        ]
        aborted = cli(["abort", rollout_id, "--as", "carol", "--reason", "wrong release"], env)
        code = run.wait(30)
        output = run.output()
    final = rollout_of(store, rollout_id)
    report(
        "reconciler while host2 waits at the gate of a paused rollout (3 s, a round every 0.5 s)",
        f"{len(restarts)} restarts of host2 recorded: {restarts[:3]}; {len(seen)} samples of host2 "
        f"{sorted({h.state.value for h in seen})}; positive control: {guarded}; run exit {code}, "
        f"{final.state.value} ({final.reason}); actions: {actions_text(store, rollout_id)}",
    )

    # Its chain is alive and looks again every second: the reconciler must not restart it each round.
    assert not restarts, restarts
    assert len(seen) >= 20, len(seen)
    assert {h.state for h in seen} == {H.PENDING}, [h.state for h in seen]
    assert "host1 maint" in guarded, guarded
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert code == 1, output
    assert final.state is R.ABORTED, final.reason
    assert host_states(store, rollout_id) == {
        "host1": H.SUCCEEDED,
        "host2": H.SKIPPED,
        "host3": H.SKIPPED,
        "host4": H.SKIPPED,
    }


def test_abort_finishes_the_host_in_flight_and_skips_the_rest(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "abort", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = write_playbook(tmp_path, "abort", steps_before=[SLOW_STEP])
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: host_states(store, rollout_id)["host2"] is H.UPDATING, 40, "host2 to update")
        aborted = cli(["abort", rollout_id, "--as", "dave", "--reason", "wrong release"], env)
        code = run.wait(60)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    report(
        "abort during host2's update",
        f"{measured.load.summary()}; run exit {code}, {final.state.value} ({final.reason}); "
        f"{state_text(store, rollout_id)}; actions: {actions_text(store, rollout_id)}",
    )

    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert code == 1, output
    assert final.state is R.ABORTED, final.reason
    assert host_states(store, rollout_id) == {
        "host1": H.SUCCEEDED,
        "host2": H.SUCCEEDED,
        "host3": H.SKIPPED,
        "host4": H.SKIPPED,
    }
    assert versions(farm) == {"host1": "2", "host2": "2", "host3": "1", "host4": "1"}
    assert not [s for s in store.steps(rollout_id) if s.host in ("host3", "host4")]
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


def test_abort_while_draining_puts_the_host_back_as_it_was(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "abort-drain", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    playbook = sessions_playbook(tmp_path, "abort-drain", "30s")  # host1's user sessions hold it in drain
    user_sessions(farm, busy="host1")
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_for(lambda: host_states(store, rollout_id)["host1"] is H.DRAINING, 30, "host1 to drain")
        aborted = cli(["abort", rollout_id, "--as", "dave", "--reason", "wrong release"], env)
        code = run.wait(30)
        output = run.output()
    measured = figures()
    final = rollout_of(store, rollout_id)
    host1 = journal_of(store, rollout_id, "host1")
    report(
        "abort while host1 drains",
        f"{measured.load.summary()}; run exit {code}, {final.state.value} ({final.reason}); "
        f"{state_text(store, rollout_id)}; host1 journal: {journal_text(host1)}",
    )

    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert code == 1, output
    assert final.state is R.ABORTED, final.reason
    assert host_states(store, rollout_id) == {
        "host1": H.FAILED,
        "host2": H.SKIPPED,
        "host3": H.SKIPPED,
        "host4": H.SKIPPED,
    }
    assert [s.step for s in host1] == ["drain", "restore"], journal_text(host1)
    assert "aborted" in host1[0].detail, host1[0].detail
    assert versions(farm) == dict.fromkeys(ALL, "1")
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert_all_in_service(farm)


# The window test's hosts: a host's update sleeps this long. Before any host finished, the engine expects a
# host to need its timeouts + 60 s (expected_host_seconds: 106 s here), so the window must be open that long
# when the first host starts; afterwards it expects 1.5x the slowest host so far (~41 s for ~27 s hosts).
# Started ~110 s before the close, the rollout then pauses after its 3rd host (~28 s left, ~13 s short of
# the 41 s; a slower machine only makes it pause sooner, after the 2nd host) and resumes at the reopening.
WINDOW_SLEEP = 26
WINDOW_TIMEOUTS = {
    "drain": {"timeout": "2s"},
    "stabilize": {"interval": "200ms", "successes": 3, "timeout": "5s"},
}


def window_playbook(tmp_path: Path, allowed: list[str] | None) -> Path:
    data: dict[str, Any] = dict(WINDOW_TIMEOUTS)
    if allowed is not None:
        data["window"] = {"timezone": "UTC", "allowed": allowed}
    return write_playbook(
        tmp_path,
        "window" if allowed else "window-estimate",
        steps_before=[{"run": f"sleep {WINDOW_SLEEP}", "timeout": f"{WINDOW_SLEEP + 3}s"}],
        step_timeout="5s",  # the loopback-v2 steps' timeouts count in the engine's first estimate too
        **data,
    )


def test_window_closing_mid_rollout_pauses_and_resumes_by_itself(farm: LoopbackFarm, tmp_path: Path) -> None:
    env = orch_env(tmp_path, "window", broker=False)
    store = Store(env["ORCH_DATABASE_URL"])
    spec = load_spec(window_playbook(tmp_path, None), farm.inventory)
    need = expected_host_seconds(spec, [])
    # 5 s for `run` to start and pass its preflight before the first host's gate (~1 s measured).
    plan = plan_window(time.time(), need + 5)
    playbook = window_playbook(tmp_path, plan.allowed)
    changes: list[tuple[float, RolloutState, str]] = []
    with ServerWatch(farm, max_seconds=400) as watch, cleanup(env) as procs:
        # Not a wait for a condition: the launch instant is part of the window's plan on the wall clock.
        time.sleep(max(0.0, plan.launch - time.time()))
        launched = time.time()
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log")
        procs.append(run)
        rollout_id = the_rollout(store).id
        at_pause: dict[str, HostState] = {}
        deadline = time.monotonic() + (plan.reopens - time.time()) + 4 * (WINDOW_SLEEP + 10) + 30
        while run.alive():
            assert time.monotonic() < deadline, f"the rollout is still going: {state_text(store, rollout_id)}"
            rollout = rollout_of(store, rollout_id)
            if not changes or changes[-1][1:] != (rollout.state, rollout.reason):
                changes.append((time.time(), rollout.state, rollout.reason))
                if rollout.state is R.PAUSED and not at_pause:
                    at_pause = host_states(store, rollout_id)
            time.sleep(0.1)  # the sampling period of the rollout's state changes
        code = run.wait(10)
        output = run.output()
    final = rollout_of(store, rollout_id)
    paused = next((c for c in changes if c[1] is R.PAUSED), None)
    assert paused is not None, f"the rollout never paused: {changes}; {output}"
    resumed = next((c for c in changes if c[0] > paused[0] and c[1] is R.RUNNING), None)
    assert resumed is not None, changes
    steps = store.steps(rollout_id)
    first_step = {h: min(s.started_at for s in steps if s.host == h) for h in ALL}
    after_pause = sorted(h for h, state in at_pause.items() if state is H.PENDING)
    out_while_paused = watch.out_of_service(ALL, since=paused[0], until=plan.reopens)
    report(
        "maintenance window closing mid-rollout",
        f"window {plan.allowed} UTC; first host expected to need {need:.0f}s; run started "
        f"{plan.closes - launched:.0f}s before the close, host1 drained "
        f"{first_step['host1'] - launched:.1f}s after; paused {plan.closes - paused[0]:.1f}s before the "
        f"close ({paused[2]}) with "
        f"{', '.join(f'{h} {s.value}' for h, s in at_pause.items())}; "
        f"{len(watch.samples(paused[0], plan.reopens))} HAProxy samples until the reopening, all 4 in "
        f"service: {not out_while_paused}; resumed {resumed[0] - plan.reopens:.1f}s after the reopening; "
        f"run exit {code}, {final.state.value} {time.time() - launched:.0f}s after the start",
    )

    assert paused[2].startswith("maintenance window"), paused[2]
    assert at_pause.get("host1") is H.SUCCEEDED, f"host1 must be done before the window closes: {at_pause}"
    assert after_pause, f"the window must close before the last host: {at_pause}"
    assert set(at_pause.values()) <= {H.SUCCEEDED, H.PENDING}, at_pause
    assert len(watch.samples(paused[0], plan.reopens)) > 100
    assert not out_while_paused, out_while_paused[:3]
    for host in after_pause:
        assert first_step[host] >= plan.reopens, f"{host} started before the window reopened"
    assert resumed[0] >= plan.reopens - 0.5 and resumed[2] == "", resumed
    assert code == 0, output
    assert final.state is R.SUCCEEDED, final.reason
    assert versions(farm) == dict.fromkeys(ALL, "2")
    assert_all_in_service(farm)
