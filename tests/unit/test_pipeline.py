"""The host pipeline on fakes: which states it walks, and what it asks the LB, hypervisor and host to do.

A fake clock moves by every delay the pipeline asks for; nothing sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.host import change as remote_commands
from orchestrator.engine.host.machine import HANDLERS, LB_OUTAGE_TIMEOUT, STEP_NAMES, HostPipeline
from orchestrator.engine.host.run import poll_delay
from orchestrator.errors import HypervisorError, LoadBalancerError, RemoteError
from orchestrator.model.progress import Progress
from orchestrator.model.states import TERMINAL, TRANSITIONS, HostState
from tests.unit.fakes import Rig, host_spec, rig, rollout_spec

S = HostState
W = "web1"
DRAIN, MAINT, READY = ("drain", W), ("maint", W), ("ready", W)
CREATE = ("create", "web1-vm", "orch-R1")
DELETE = ("delete", "web1-vm", "orch-R1")
REVERT = ("revert", "web1-vm", "orch-R1")
HAPPY = [S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.UPDATING, S.CHECKING, S.RETURNING, S.SUCCEEDED]
UPDATED = [S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.UPDATING]
BACK = [S.REVERTING, S.VERIFYING, S.RESTORING, S.ROLLED_BACK]


def test_happy_path_drains_snapshots_updates_checks_returns_and_keeps_the_snapshot_for_the_rollout() -> None:
    # The snapshot outlives the host: rollback_all and `orchestrator rollback` need it; retention is applied
    # when the whole rollout ends (engine.driver).
    r = rig()
    state, progress = r.drive()
    assert state is S.SUCCEEDED
    assert r.journal.states() == HAPPY
    assert r.lb.calls == [DRAIN, MAINT, READY]
    assert r.snaps.calls == [CREATE]
    assert r.snaps.memory == [True]
    assert r.snaps.list("web1-vm") == ["orch-R1"] and progress.snapshot == "orch-R1"
    assert r.remotes.uploads == [(W, Path("/a/app.tgz"), "/tmp/a", None)]
    # Run under a marker shell whose process group can be stopped if the command is ever cut off.
    pidfile = remote_commands.pid_file("R1", W, 1)
    [(host, command)] = r.remotes.commands
    run_id = re.search(r"update1-([0-9a-f]{12})\.rc", command)
    assert run_id, command
    status = remote_commands.result_file("R1", W, 1, run_id.group(1))
    assert (host, command) == (W, remote_commands.wrap("/opt/app/bin/install /tmp/a", pidfile, status))
    assert r.checks.probes == ["http new"] * 3  # stabilize_successes
    assert r.remotes.discarded == []
    assert r.journal.outcomes() == [
        ("drain", "ok"),
        ("maint", "ok"),
        ("snapshot", "ok"),
        ("update[0]", "ok"),
        ("update[1]", "ok"),
        ("checks", "ok"),
        ("return", "ok"),
    ]
    assert progress.error == ""
    assert r.journal.steps[-1].detail == "UP"
    # What each step said when it began (status shows it while it runs): an update step its label.
    assert [(s.step, s.started_detail) for s in r.journal.steps] == [
        ("drain", ""),
        ("maint", ""),
        ("snapshot", ""),
        ("update[0]", "upload app.tgz"),
        ("update[1]", "run install"),
        ("checks", ""),
        ("return", ""),
    ]
    # Only the command kept output; a step that was not one has none.
    assert [(s.step, s.output_tail) for s in r.journal.steps if s.output_tail] == [("update[1]", "done")]
    # An upload is not a command: no exit code, no output.
    [upload] = [s for s in r.journal.steps if s.step == "update[0]"]
    assert (upload.exit_code, upload.output_tail) == (None, "")
    # What status shows of a host entering a state is that state's own word, nothing left from the last.
    entered = [(state, saved["detail"]) for _, state, saved in r.journal.saves]
    assert (S.SNAPSHOTTING, "") in entered and (S.RETURNING, "") in entered


def test_retention_keep_leaves_the_snapshot() -> None:
    r = rig(rollout_spec(snapshot_retention="keep"))
    assert r.drive()[0] is S.SUCCEEDED
    assert r.snaps.calls == [CREATE]
    assert r.snaps.list("web1-vm") == ["orch-R1"]


def test_snapshot_memory_flag_is_passed_on() -> None:
    r = rig(rollout_spec(snapshot_memory=False))
    assert r.drive()[0] is S.SUCCEEDED
    assert r.snaps.memory == [False]


def test_drain_waits_while_sessions_remain_then_goes_on() -> None:
    r = rig()
    r.lb.sessions[W] = 4
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    assert state is S.DRAINING
    assert delay is not None and 0 < delay <= 1.0
    assert r.lb.calls == [DRAIN]
    assert progress.detail == "4 connections left"
    r.clock.advance(delay)
    state, progress, delay = r.pipeline.advance(state, progress)  # still 4: wait again, no new drain
    assert (state, r.lb.calls) == (S.DRAINING, [DRAIN])
    assert delay is not None
    r.lb.sessions[W] = 0
    r.clock.advance(delay)
    state, _ = r.drive(state, progress)
    assert state is S.SUCCEEDED
    assert r.lb.calls == [DRAIN, MAINT, READY]


def test_drain_delay_never_overshoots_the_timeout() -> None:
    r = rig(rollout_spec(drain_timeout=0.5))
    r.lb.sessions[W] = 1
    state, progress = S.PENDING, Progress()
    total = 0.0
    while True:
        state, progress, delay = r.pipeline.advance(state, progress)
        if delay is None:
            break
        total += delay
        r.clock.advance(delay)
    assert state is S.FAILED
    assert total == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("elapsed", "delay"), [(0.0, 0.02), (0.1, 0.02), (0.5, 0.05), (5.0, 0.5), (10.0, 1.0), (3600.0, 1.0)]
)
def test_poll_delay_starts_fast_and_backs_off_to_one_second(elapsed: float, delay: float) -> None:
    assert poll_delay(elapsed) == pytest.approx(delay)


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Callable[[Rig], None]
    final: HostState
    path: list[HostState]
    lb: list[tuple[str, str]]
    snaps: list[tuple[str, str, str]]
    spec: dict[str, Any] = field(default_factory=dict)
    snapshots: bool = True
    discarded: int = 0


def _sessions_stay(r: Rig) -> None:
    r.lb.sessions[W] = 3


def _install_exits(code: int | str) -> Callable[[Rig], None]:
    def setup(r: Rig) -> None:
        r.remotes.outcomes["install"] = code

    return setup


def _unhealthy(*labels: str) -> Callable[[Rig], None]:
    def setup(r: Rig) -> None:
        for label in labels:
            r.checks.healthy[label] = False

    return setup


def _lb_statuses(*statuses: str) -> Callable[[Rig], None]:
    def setup(r: Rig) -> None:
        r.lb.statuses_after_ready = list(statuses)

    return setup


def _snapshot_error(method: str) -> Callable[[Rig], None]:
    def setup(r: Rig) -> None:
        r.snaps.errors[method] = [HypervisorError(f"{method} refused", domain="web1-vm")]

    return setup


def _both(*setups: Callable[[Rig], None]) -> Callable[[Rig], None]:
    def setup(r: Rig) -> None:
        for one in setups:
            one(r)

    return setup


SCENARIOS = [
    Scenario(
        "drain timeout: back in service, nothing changed",
        _sessions_stay,
        S.FAILED,
        [S.DRAINING, S.RESTORING, S.FAILED],
        [DRAIN, READY],
        [],
    ),
    Scenario(
        "drain timeout with on_timeout force: goes on",
        _sessions_stay,
        S.SUCCEEDED,
        HAPPY,
        [DRAIN, MAINT, READY],
        [CREATE],
        spec={"drain_on_timeout": "force"},
    ),
    Scenario(
        "update exits 1: reverted, checked, returned",
        _install_exits(1),
        S.ROLLED_BACK,
        UPDATED + BACK,
        [DRAIN, MAINT, MAINT, READY],
        [CREATE, REVERT],
        discarded=1,
    ),
    Scenario(
        "update times out, disk-only snapshot: the command is stopped over SSH, then reverted",
        _install_exits("timeout"),
        S.ROLLED_BACK,
        UPDATED + BACK,
        [DRAIN, MAINT, MAINT, READY],
        [CREATE, REVERT],
        spec={"snapshot_memory": False},
        discarded=3,  # after the timeout; for a fresh connection to stop the command; after the revert
    ),
    Scenario(
        "update times out, memory snapshot: reverted without reaching the guest (a frozen guest)",
        _install_exits("timeout"),
        S.ROLLED_BACK,
        UPDATED + BACK,
        [DRAIN, MAINT, MAINT, READY],
        [CREATE, REVERT],
        discarded=2,  # after the timeout; after the revert: nothing asked of the guest in between
    ),
    Scenario(
        "new version never stable: reverted",
        _unhealthy("http new"),
        S.ROLLED_BACK,
        [*UPDATED, S.CHECKING, *BACK],
        [DRAIN, MAINT, MAINT, READY],
        [CREATE, REVERT],
        discarded=1,
    ),
    Scenario(
        "reverted server still unhealthy: left OUT, never set ready",
        _unhealthy("http new", "http old"),
        S.FAILED_OUT,
        [*UPDATED, S.CHECKING, S.REVERTING, S.VERIFYING, S.FAILED_OUT],
        [DRAIN, MAINT, MAINT],
        [CREATE, REVERT],
        discarded=1,
    ),
    Scenario(
        "no snapshot (disabled) and the update fails: left OUT",
        _install_exits(1),
        S.FAILED_OUT,
        [S.DRAINING, S.OUT_OF_POOL, S.UPDATING, S.FAILED_OUT],
        [DRAIN, MAINT],
        [],
        spec={"snapshot_enabled": False},
    ),
    Scenario(
        "no snapshot provider and the update fails: left OUT",
        _install_exits(1),
        S.FAILED_OUT,
        [S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.UPDATING, S.FAILED_OUT],
        [DRAIN, MAINT],
        [],
        snapshots=False,
    ),
    Scenario(
        "LB never says UP after the update: reverted, then UP on the old version",
        _lb_statuses("UP 1/2", "UP"),
        S.ROLLED_BACK,
        [*UPDATED, S.CHECKING, S.RETURNING, *BACK],
        [DRAIN, MAINT, READY, MAINT, READY],
        [CREATE, REVERT],
        discarded=1,
    ),
    Scenario(
        "LB never says UP, not even for the old version: FAILED_OUT",
        _lb_statuses("DOWN"),
        S.FAILED_OUT,
        [*UPDATED, S.CHECKING, S.RETURNING, S.REVERTING, S.VERIFYING, S.RESTORING, S.FAILED_OUT],
        [DRAIN, MAINT, READY, MAINT, READY],
        [CREATE, REVERT],
        discarded=1,
    ),
    Scenario(
        "snapshot creation fails: nothing changed, back in service",
        _snapshot_error("create"),
        S.FAILED,
        [S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.RESTORING, S.FAILED],
        [DRAIN, MAINT, READY],
        [],
    ),
    Scenario(
        "revert fails: FAILED_OUT",
        _both(_install_exits(1), _snapshot_error("revert")),
        S.FAILED_OUT,
        [*UPDATED, S.REVERTING, S.FAILED_OUT],
        [DRAIN, MAINT, MAINT],
        [CREATE],
    ),
    Scenario(
        "snapshot delete fails after success: still SUCCEEDED",
        _snapshot_error("delete"),
        S.SUCCEEDED,
        HAPPY,
        [DRAIN, MAINT, READY],
        [CREATE],
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(sc: Scenario) -> None:
    r = rig(rollout_spec(**sc.spec), snapshots=sc.snapshots)
    sc.setup(r)
    state, progress = r.drive()
    assert state is sc.final
    assert r.journal.states() == sc.path
    assert r.lb.calls == sc.lb
    assert r.snaps.calls == sc.snaps
    assert r.remotes.discarded == [W] * sc.discarded
    assert (progress.error == "") == (sc.final is S.SUCCEEDED)
    # Every step the journal opened was closed, and failures are recorded as such.
    assert all(step.outcome in ("ok", "failed") for step in r.journal.steps)
    assert any(o == "failed" for _, o in r.journal.outcomes()) == (sc.final is not S.SUCCEEDED)


def test_drain_timeout_message_says_nothing_changed() -> None:
    r = rig()
    _sessions_stay(r)
    _, progress = r.drive()
    assert "3 connections still open after the drain timeout (30s)" in progress.error
    assert "nothing changed" in progress.error
    assert r.remotes.commands == [] and r.remotes.gets == 0


def test_failed_update_is_journaled_with_exit_code_and_output() -> None:
    r = rig()
    r.remotes.outcomes["install"] = 1
    _, progress = r.drive()
    failed = [s for s in r.journal.steps if s.outcome == "failed"]
    assert len(failed) == 1
    assert failed[0].step == "update[1]"
    assert failed[0].exit_code == 1
    assert "failed with 1" in failed[0].output_tail
    assert "exited 1" in progress.error
    assert progress.reverted
    assert r.checks.probes == ["http old"] * 3  # only the old version's checks ran


def test_failed_out_message_says_out_of_the_pool() -> None:
    r = rig()
    _unhealthy("http new", "http old")(r)
    _, progress = r.drive()
    assert "stays OUT of the pool" in progress.error


def test_checks_recover_before_the_timeout() -> None:
    r = rig()
    r.checks.healthy["http new"] = [False, False, True]
    assert r.drive()[0] is S.SUCCEEDED
    assert r.checks.probes == ["http new"] * 5  # two failures, then three passes in a row


def test_a_failed_probe_resets_the_run_of_successes() -> None:
    r = rig()
    r.checks.healthy["http new"] = [True, True, False, True, True, True]
    assert r.drive()[0] is S.SUCCEEDED
    assert len(r.checks.probes) == 6


def test_transient_adapter_error_is_retried() -> None:
    r = rig()
    r.lb.errors["drain"] = [LoadBalancerError("connect to /run/haproxy.sock: refused", transient=True)]
    r.remotes.errors["get"] = [RemoteError("connection refused by web1", host=W, transient=True)] * 2
    assert r.drive()[0] is S.SUCCEEDED
    assert r.lb.attempts["drain"] == 2
    assert r.lb.calls == [DRAIN, MAINT, READY]
    assert len(r.sleeps) == 3  # one drain retry, two connection retries; all through the injected sleep


def test_non_transient_adapter_error_fails_at_once() -> None:
    r = rig()
    r.lb.errors["maint"] = [LoadBalancerError("backend app has no server web1")]
    state, progress = r.drive()
    assert state is S.FAILED
    assert r.lb.attempts["maint"] == 1
    assert r.sleeps == []
    assert "has no server web1" in progress.error
    assert r.lb.calls == [DRAIN, READY]


def test_load_balancer_outage_pauses_the_host_where_it_stands_then_it_carries_on() -> None:
    # The retry policy gives up after 3 attempts; the host then waits (blocked), it does not fail,
    # because the failure path needs the load balancer too.
    r = rig(attempts=3)
    r.lb.errors["drain"] = [LoadBalancerError("refused", transient=True) for _ in range(5)]
    progress = Progress()
    state, progress, delay = r.pipeline.advance(S.PENDING, progress)
    assert (
        state is S.DRAINING and delay is not None and progress.blocked.startswith("load balancer unreachable")
    )
    state, progress = r.drive(state, progress)
    assert state is S.SUCCEEDED and (progress.blocked, progress.blocked_by) == ("", "")
    assert r.lb.attempts["drain"] == 6
    [drain] = [s for s in r.journal.steps if s.step == "drain"]
    assert drain.work < 0.1  # the outage's waits are not the drain's own work


def test_load_balancer_outage_longer_than_its_limit_fails_and_says_so() -> None:
    r = rig(attempts=3)
    r.lb.errors["drain"] = [LoadBalancerError("refused", transient=True) for _ in range(100_000)]
    r.lb.errors["ready"] = [LoadBalancerError("refused", transient=True) for _ in range(100_000)]
    state, progress = r.drive()
    assert state is S.FAILED_OUT  # not even put back: nothing can be done without the load balancer
    assert progress.error == f"load balancer unreachable: refused (for {LB_OUTAGE_TIMEOUT:g}s)"


def test_non_transient_load_balancer_error_fails_at_once() -> None:
    r = rig(attempts=3)
    r.lb.errors["drain"] = [LoadBalancerError("backend app has no server 'web1'")]
    state, _ = r.drive()
    assert state is S.FAILED
    assert r.lb.attempts["drain"] == 1


def test_update_interrupted_mid_command_is_reverted_and_applied_again_once() -> None:
    """A worker died inside update[1]: its marker and open journal row are in the stored progress."""
    r = rig()
    r.snaps.create(r.host.domain, "orch-r1", memory=True)
    r.snaps.calls.clear()
    open_row = r.journal.step_started(r.host.name, "update[1]", "")
    stored = Progress(snapshot="orch-r1", step_index=1, running_step=1, journal_id=open_row)
    state, _ = r.drive(S.UPDATING, stored)
    assert state is S.SUCCEEDED
    assert r.snaps.calls[0][0] == "revert"  # back to the snapshot before anything runs again
    assert ("update[1]", "interrupted") in r.journal.outcomes()


def _ended_while_away(exit_code: int, snapshot_memory: bool) -> tuple[Rig, HostState, Progress]:
    """update[0] of two ended on its own while nobody could record it (its worker died after it, or the
    store stopped answering): the host's status file holds its exit code."""
    r = rig(rollout_spec(snapshot_memory=snapshot_memory))
    r.snaps.create(r.host.domain, "orch-R1", memory=snapshot_memory)
    r.snaps.calls.clear()
    r.remotes.stdout["update0-abc.rc"] = f"ended with exit {exit_code}"
    open_row = r.journal.step_started(r.host.name, "update[0]", "")
    stored = Progress(snapshot="orch-R1", step_index=0, running_step=0, run_id="abc", journal_id=open_row)
    state, progress = r.drive(S.UPDATING, stored)
    return r, state, progress


@pytest.mark.parametrize("snapshot_memory", [False, True])
def test_a_command_that_ended_unrecorded_with_exit_0_counts_and_the_update_goes_on(
    snapshot_memory: bool,
) -> None:
    r, state, _ = _ended_while_away(0, snapshot_memory)
    assert state is S.SUCCEEDED
    assert r.snaps.calls == []  # no revert: what the command did stands
    outcomes = r.journal.outcomes()
    assert outcomes[:2] == [("update[0]", "ok"), ("update[1]", "ok")], outcomes
    assert "read from the host" in r.journal.steps[0].detail, r.journal.steps[0]
    ran = [c for _, c in r.remotes.commands]
    assert not any("update0-" in c and "sh -c" in c for c in ran), "update[0] ran again"
    assert any("/opt/app/bin/install" in c for c in ran)  # update[1] ran, once


@pytest.mark.parametrize("snapshot_memory", [False, True])
def test_a_command_that_ended_unrecorded_with_a_failure_fails_the_host_as_it_would_have(
    snapshot_memory: bool,
) -> None:
    r, state, progress = _ended_while_away(3, snapshot_memory)
    assert state is S.ROLLED_BACK, progress.error
    assert "exited 3" in progress.error and "read from the host" in progress.error, progress.error
    assert r.snaps.calls[0][0] == "revert"
    assert ("update[0]", "failed") in r.journal.outcomes()
    assert not any("/opt/app/bin/install" in c for _, c in r.remotes.commands), "update[1] must not run"


def test_resume_from_persisted_progress_does_not_repeat_actions() -> None:
    """A Celery task stores (state, progress as JSON) and a later task, maybe on another worker, goes on."""
    r = rig()
    state, progress, delay = S.PENDING, Progress(), None
    while state is not S.CHECKING:
        state, progress, delay = r.pipeline.advance(state, progress)
    assert delay is not None
    stored = progress.to_json()
    assert r.lb.calls == [DRAIN, MAINT] and r.snaps.calls == [CREATE]
    run = r.pipeline.run
    fresh = HostPipeline(r.spec, r.host, run.adapters, r.journal, retry=run.retry, clock=r.clock)
    r.pipeline = fresh
    r.clock.advance(delay)
    final, progress = r.drive(state, Progress.from_json(stored))
    assert final is S.SUCCEEDED
    assert r.lb.calls == [DRAIN, MAINT, READY]
    assert r.snaps.calls == [CREATE]
    assert len(r.remotes.commands) == 1


def test_every_non_terminal_state_has_a_handler_and_a_journal_name() -> None:
    handlers = HANDLERS
    assert set(handlers) == set(HostState) - TERMINAL | {S.SUCCEEDED}  # SUCCEEDED: only to roll back
    assert set(STEP_NAMES) == set(HostState) - TERMINAL - {S.PENDING}


@pytest.mark.parametrize("state", sorted(set(HostState) - TERMINAL - {S.PENDING}))
@pytest.mark.parametrize("snapshot", ["", "orch-R1"])
def test_every_failure_target_is_a_legal_transition(state: HostState, snapshot: str) -> None:
    target = rig().pipeline._failure_target(state, Progress(snapshot=snapshot))
    assert target in TRANSITIONS[state]


def test_a_timed_out_command_is_stopped_over_a_fresh_connection() -> None:
    r = rig(rollout_spec(snapshot_memory=False))  # a disk-only revert leaves running processes alone
    r.remotes.outcomes["install"] = "timeout"
    state, _ = r.drive()
    assert state is S.ROLLED_BACK
    ran = [c for _, c in r.remotes.commands]
    assert any(_stops(c, remote_commands.pid_file("R1", W, 1)) for c in ran), ran


def test_a_memory_revert_never_waits_on_the_guest_to_stop_a_command() -> None:
    """A memory-and-disk revert replaces every process of the guest: a frozen guest that cannot be
    reached over SSH is still reverted (the stop script is never sent)."""
    r = rig()
    r.remotes.outcomes["install"] = "timeout"
    state, _ = r.drive()
    assert state is S.ROLLED_BACK
    ran = [c for _, c in r.remotes.commands]
    assert not any(_stops(c, remote_commands.pid_file("R1", W, 1)) for c in ran), ran
    assert r.snaps.calls == [CREATE, REVERT]


def _stops(command: str, pidfile: str) -> bool:
    return pidfile in command and "kill -s TERM" in command


def test_the_stop_script_only_kills_a_group_that_still_carries_the_marker() -> None:
    script = remote_commands.stop_script("/tmp/orchestrator-R1-web1-update1.pid", "/tmp/x.rc")
    assert "grep -qF" in script and "tr" in script and "/proc/" in script
    assert "kill -s TERM -- -" in script and "kill -s KILL -- -" in script


def test_the_orchestrators_own_stall_does_not_count_against_the_checks() -> None:
    """A tick that arrives far later than asked (a dead worker, a broker restart) must not fail a
    healthy host for a stabilize timeout that ran out while nobody probed it."""
    r = rig(rollout_spec(stabilize_timeout=30.0, stabilize_interval=1.0, stabilize_successes=3))
    state, progress, delay = S.PENDING, Progress(), None
    while state is not S.CHECKING:
        state, progress, delay = r.pipeline.advance(state, progress)
    assert delay is not None
    r.clock.advance(300.0)  # the orchestrator was gone for five minutes
    state, progress = r.drive(state, progress)
    assert state is S.SUCCEEDED, progress.error


def _sessions_rig(on_timeout: str) -> Rig:
    from orchestrator.model.playbook import Sessions

    host = host_spec("web1").model_copy(
        update={"session_probe": "count-sessions", "session_warn": "wall bye"}
    )
    spec = rollout_spec(
        [host],
        drain_timeout=3.0,
        sessions=Sessions(
            probe="count-sessions", interval=0.5, warn="wall bye", warn_every=1.0, on_timeout=on_timeout
        ),
    )  # type: ignore[arg-type]
    r = rig(spec)
    r.remotes.stdout["count-sessions"] = "3"
    return r


def test_user_sessions_that_never_end_postpone_the_host_back_in_service_once() -> None:
    r = _sessions_rig("postpone")
    state, progress = r.drive()
    assert state is S.PENDING and progress.outcome == "postpone" and progress.postponed == 1
    assert r.lb.calls == [DRAIN, READY]  # back in service, nothing changed
    assert any("wall bye" in c for _, c in r.remotes.commands)  # the users were warned
    assert ("drain", "postponed") in r.journal.outcomes()
    # Its second chance (the driver clears the outcome when its batch starts): skipped this time.
    progress.outcome = ""
    state, progress = r.drive(state, progress)
    assert state is S.SKIPPED and progress.outcome == "skip"


def test_user_sessions_that_end_let_the_drain_go_on() -> None:
    r = _sessions_rig("postpone")
    r.remotes.stdout["count-sessions"] = "0"
    state, _ = r.drive()
    assert state is S.SUCCEEDED


# -- a hypervisor that does not answer


def _unanswered() -> HypervisorError:
    return HypervisorError("libvirt did not answer within 300s", domain="web1-vm", unanswered=True)


def test_a_hypervisor_silent_before_the_snapshot_puts_the_server_back_untouched() -> None:
    r = rig()
    r.snaps.errors["create"] = [_unanswered()]
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    assert state is S.PENDING and delay is not None
    assert progress.held_by == "hypervisor" and "does not answer" in progress.held_why
    assert r.lb.calls == [DRAIN, MAINT, READY]  # back in service
    assert r.remotes.commands == []  # nothing ran on the server
    assert r.journal.states() == [S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.RESTORING, S.PENDING]


def test_a_hypervisor_that_answers_no_is_a_failure_not_a_wait() -> None:
    r = rig()
    r.snaps.errors["create"] = [HypervisorError("no such domain", domain="web1-vm")]
    state, _ = r.drive()
    assert state is S.FAILED and r.lb.calls == [DRAIN, MAINT, READY]


def test_a_hypervisor_silent_during_the_revert_holds_the_host_then_fails_it_out_saying_what_to_do() -> None:
    r = rig()
    r.remotes.outcomes["install"] = "1"
    r.snaps.errors["revert"] = [_unanswered()] * 1000
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    first = r.clock.now  # the first revert that got no answer
    waits: list[float] = []
    while delay is not None and state is S.REVERTING:
        assert progress.blocked_by == "hypervisor" and "hypervisor unreachable" in progress.blocked
        # The retry pace: a quarter of the time it has been silent, between 0.5 and 5 s.
        silent = r.clock.now - first
        assert delay == pytest.approx(min(5.0, max(0.5, silent / 4), 600.0 - silent)), silent
        waits.append(delay)
        r.clock.advance(delay)
        state, progress, delay = r.pipeline.advance(state, progress)
    assert state is S.FAILED_OUT
    assert waits[0] == 0.5 and max(waits) == 5.0
    assert r.clock.now - first == pytest.approx(600.0)  # the budget, not a moment past it
    assert progress.error == (
        "the hypervisor did not answer for 600s (libvirt did not answer within 300s); web1-vm is OUT of "
        "the pool: revert it to snapshot orch-R1 by hand, check it, then return it to the pool"
    )
    assert READY not in r.lb.calls  # never put back on an unknown version


def _two_checks(**overrides: Any) -> Rig:
    from tests.unit.fakes import CHECK_NEW

    second = CHECK_NEW.model_copy(update={"label": "tcp new"})
    host = host_spec().model_copy(update={"checks": [CHECK_NEW, second]})
    return rig(rollout_spec([host], **overrides))


def test_the_checks_journal_names_what_each_passing_check_saw_and_the_failure_the_failing_one() -> None:
    """What an operator reads after the fact: every check's own detail, in order, on success; the
    failing check's label and detail, and the limit, on failure; and where the host stands meanwhile."""
    r = _two_checks()
    assert r.drive()[0] is S.SUCCEEDED
    checks = [s for s in r.journal.steps if s.step == "checks"]
    assert [s.detail for s in checks] == ["stable: HTTP 200; HTTP 200"]

    r = _two_checks(stabilize_timeout=5.0)
    r.checks.healthy["tcp new"] = False
    state, progress = r.drive()
    assert state is S.ROLLED_BACK
    assert progress.error == "checks did not pass after 5s: tcp new: HTTP 503"
    failed = [s for s in r.journal.steps if s.step == "checks"]
    assert failed[-1].outcome == "failed", failed


def test_checks_fail_when_the_stabilize_timeout_is_reached_exactly() -> None:
    """The timeout is a limit reached, not one passed: at exactly ``stabilize_timeout`` seconds of
    failing checks the host fails (interval 1 s, timeout 3 s: probes at 0, 1, 2 and 3 s)."""
    r = rig(rollout_spec(stabilize_timeout=3.0, stabilize_interval=1.0))
    r.checks.healthy["http new"] = False
    state, _progress = r.drive()
    assert state is S.ROLLED_BACK
    assert r.checks.probes.count("http new") == 4, r.checks.probes


def test_a_host_waiting_on_its_checks_shows_what_the_last_round_saw() -> None:
    """`status` shows a checking host's progress detail: the failing check and its answer."""
    r = _two_checks()
    r.checks.healthy["tcp new"] = [False, True]
    state, progress, delay = S.PENDING, Progress(), None
    while state is not S.CHECKING:
        state, progress, delay = r.pipeline.advance(state, progress)
    assert state is S.CHECKING and delay is not None
    assert progress.detail == "tcp new: HTTP 503"


def test_a_first_step_cut_off_under_a_disk_only_snapshot_is_stopped_before_the_revert() -> None:
    """update[0] (step index 0) timed out: with a disk-only snapshot its processes survive the revert, so
    the leftover is stopped first; the journal says both, and no command is left marked running."""
    from orchestrator.model.spec import StepSpec

    install = StepSpec(kind="run", label="run install", timeout=30.0, command="/opt/app/bin/install")
    host = host_spec(steps=[install])
    r = rig(rollout_spec([host], snapshot_memory=False))
    r.remotes.outcomes["install"] = "timeout"
    state, progress = r.drive()
    assert state is S.ROLLED_BACK
    ran = [c for _, c in r.remotes.commands]
    stop = [i for i, c in enumerate(ran) if _stops(c, remote_commands.pid_file("R1", W, 0))]
    assert stop, ran
    assert r.snaps.calls == [CREATE, REVERT]
    [revert] = [s for s in r.journal.steps if s.step == "revert"]
    assert revert.detail.endswith("; reverted web1-vm to orch-R1"), revert.detail
    assert progress.running_step == -1
    outcomes = r.journal.outcomes()
    assert ("update[0]", "failed") in outcomes or ("update[0]", "timeout") in outcomes, outcomes


def test_the_revert_path_journal_reads_as_what_happened() -> None:
    """The words an auditor reads for a failed host, step by step, exactly."""
    r = rig()
    _unhealthy("http new")(r)
    state, _progress = r.drive()
    assert state is S.ROLLED_BACK
    details = {s.step: s.detail for s in r.journal.steps if s.step in ("revert", "verify_old", "restore")}
    assert details["revert"] == "reverted web1-vm to orch-R1"
    assert details["verify_old"] == "old version healthy: HTTP 200"
    assert details["restore"] == "back in pool on the old version"


def test_a_server_haproxy_never_reports_up_says_so_with_the_status_and_the_limit() -> None:
    r = rig(rollout_spec(stabilize_timeout=4.0))
    _lb_statuses("DOWN")(r)
    state, progress, delay = S.PENDING, Progress(), None
    while state is not S.RETURNING or delay is None:
        state, progress, delay = r.pipeline.advance(state, progress)
    assert progress.detail == "load balancer says DOWN"  # what `status` shows meanwhile
    began = r.clock.now - r.pipeline.run.elapsed(progress)
    for _ in range(1000):  # the waits are cut to the limit: it fails at 4 s, not after
        if state is not S.RETURNING:
            break
        r.clock.advance(max(delay or 0.0, 0.001))
        state, progress, delay = r.pipeline.advance(state, progress)
    assert r.clock.now - began == pytest.approx(4.0)
    state, progress = r.drive(state, progress)
    assert state is S.FAILED_OUT
    [back] = [s for s in r.journal.steps if s.step == "return"]
    assert back.detail == "back in pool: the load balancer still reports 'DOWN' after 4s", back.detail


def test_the_last_wait_for_stable_checks_ends_at_the_limit_not_past_it() -> None:
    """Probes at 0, 1, 2 and 2.5 s for a 2.5 s limit: the last wait is cut to what is left."""
    r = rig(rollout_spec(stabilize_timeout=2.5, stabilize_interval=1.0))
    r.checks.healthy["http new"] = False
    state, progress, delay = S.PENDING, Progress(), None
    while state is not S.CHECKING:
        state, progress, delay = r.pipeline.advance(state, progress)
    waits = []
    while state is S.CHECKING:
        state, progress, delay = r.pipeline.advance(state, progress)
        if state is S.CHECKING and delay is not None:
            waits.append(delay)
            r.clock.advance(delay)
    assert waits[-1] == pytest.approx(0.5), waits
    assert progress.error.startswith("checks did not pass after 2.5s"), progress.error


def test_a_steps_work_is_the_sum_of_the_waits_its_policy_asked_for() -> None:
    """Three passing rounds 1 s apart: the checks step's own work is the two waits between them (what the
    overhead benchmark subtracts), not the last wait alone."""
    r = rig(rollout_spec(stabilize_interval=1.0, stabilize_successes=3))
    assert r.drive()[0] is S.SUCCEEDED
    [checks] = [s for s in r.journal.steps if s.step == "checks"]
    assert checks.work == pytest.approx(2.0, abs=0.05)  # plus the fakes' own few microseconds


def _probes_with_one_late_tick(late: float) -> int:
    """Failing checks, 1 s apart, 10 s limit; one tick arrives ``late`` seconds after it was due."""
    r = rig(rollout_spec(stabilize_timeout=10.0, stabilize_interval=1.0))
    r.checks.healthy["http new"] = False
    state, progress, delay = S.PENDING, Progress(), None
    while state is not S.CHECKING:
        state, progress, delay = r.pipeline.advance(state, progress)
    r.clock.advance((delay or 0.0) + late)
    state, progress = r.drive(state, progress)
    assert state is S.ROLLED_BACK
    return r.checks.probes.count("http new")


def test_a_tick_late_by_the_grace_counts_against_the_checks_and_one_later_does_not() -> None:
    """Up to STALL_GRACE (5 s) a late tick is the host's time; past it, the orchestrator's own stall."""
    on_time = _probes_with_one_late_tick(0.0)
    assert on_time == 11  # at 0, 1, ..., 10 s
    assert _probes_with_one_late_tick(5.0) == on_time - 5  # those 5 s counted: 5 probes fewer
    assert _probes_with_one_late_tick(5.5) == on_time  # forgiven: the same probes as on time


class _NoCapacity:
    """A gate that holds every host for capacity, the way the rollout's gate does when the pool is short."""

    def __init__(self, refusals: int = 10**6) -> None:
        self.refusals = refusals

    def gate(self, host: Any, rollback: bool) -> Any:
        from orchestrator.engine.host.decisions import Hold, Proceed

        if self.refusals <= 0:
            return Proceed()
        self.refusals -= 1
        return Hold("capacity: 2 of 3 in service, need 3", 1.0, capacity=True)

    def aborting(self) -> bool:
        return False

    def postpone(self, host: Any) -> None:
        pass


def _capacity_rig(controls: _NoCapacity, **overrides: Any) -> Rig:
    return rig(rollout_spec(capacity_timeout=5.0, **overrides), controls=controls)


def test_a_host_held_for_capacity_fails_after_the_capacity_timeout_untouched_and_says_so() -> None:
    r = _capacity_rig(_NoCapacity())
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    assert state is S.PENDING and delay == 1.0
    assert progress.detail == "waiting for capacity: 2 of 3 in service, need 3"
    assert progress.held_why == "capacity: 2 of 3 in service, need 3" and progress.held_by == ""
    assert not progress.passed_gate
    state, progress = r.drive(state, progress)
    assert state is S.FAILED
    assert progress.error == "no capacity for 5s: capacity: 2 of 3 in service, need 3"
    assert r.lb.calls == [] and r.snaps.calls == []  # the server was never touched
    assert r.clock.now - 1_000_000.0 == pytest.approx(6.0)  # past the 5 s limit, at the first look after


def test_a_host_rolling_back_waits_for_capacity_as_long_as_it_takes() -> None:
    """Restoring the known-good version is not abandoned because the pool is short (README)."""
    r = _capacity_rig(_NoCapacity(refusals=30))
    state, progress = r.drive(S.PENDING, Progress(rollback=True))
    assert state is not S.FAILED, progress.error
    assert r.clock.now - 1_000_000.0 >= 30.0  # six times the capacity timeout, still going


def test_capacity_that_comes_back_lets_the_host_go_on() -> None:
    r = _capacity_rig(_NoCapacity(refusals=3))
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    assert [s for s in r.journal.states() if s is not S.PENDING] == HAPPY  # held, then the whole pipeline


def _reloaded_rig(*, uptime: float, gone_in: float | None, **overrides: Any) -> Rig:
    """HAProxy reloaded ``uptime`` seconds ago; its older processes stop within ``gone_in``; the
    rollout was created 60 s ago."""
    r = rig(rollout_spec(**overrides), created_ago=60)
    r.lb.uptime, r.lb.older_gone_in = uptime, gone_in
    return r


def test_a_drain_right_after_a_reload_waits_for_the_older_haproxy_processes_to_stop() -> None:
    """An old HAProxy process routes the connections it kept with the states it had (this server in
    service), out of the runtime API's reach: nothing may change on the server before it is gone."""
    r = _reloaded_rig(uptime=2.0, gone_in=4.0)
    started = r.clock.now
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    waited = 0.0
    while state is S.DRAINING:
        assert progress.detail.startswith("no connections left; waiting"), progress.detail
        assert r.lb.calls == [DRAIN] and r.snaps.calls == []
        assert delay is not None
        waited += delay
        r.clock.advance(delay)
        state, progress, delay = r.pipeline.advance(state, progress)
    assert waited == pytest.approx(4.0)  # exactly the older processes' bound
    assert r.clock.now - started == pytest.approx(4.0)
    assert r.lb.calls[:2] == [DRAIN, MAINT]
    state, progress = r.drive(state, progress)
    assert state is S.SUCCEEDED, progress.error


@pytest.mark.parametrize(
    ("uptime", "gone_in"),
    [(120.0, 4.0), (60.0, 4.0), (2.0, None), (2.0, 0.0)],
    ids=[
        "process older than the rollout",
        "process as old as the rollout",
        "no hard-stop-after",
        "older ones gone",
    ],
)
def test_no_wait_when_no_older_process_can_be_left(uptime: float, gone_in: float | None) -> None:
    r = _reloaded_rig(uptime=uptime, gone_in=gone_in)
    started = r.clock.now
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    assert r.clock.now - started < 4.0  # the checks' own waits only
    assert not any("waiting" in s.detail for s in r.journal.steps)


def test_older_processes_past_the_drain_timeout_fail_the_host_nothing_changed() -> None:
    r = _reloaded_rig(uptime=0.0, gone_in=30.0, drain_timeout=5.0)
    started = r.clock.now
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    while state is S.DRAINING:  # every wait lands inside the timeout; the one that reaches it ends it
        assert delay is not None and delay > 0
        r.clock.advance(delay)
        state, progress, delay = r.pipeline.advance(state, progress)
    assert r.clock.now - started == pytest.approx(5.0)
    state, progress = r.drive(state, progress)
    assert state is S.FAILED
    assert progress.error == (
        "an HAProxy process older than the drain may route to web1 for 25.0s more after the drain "
        "timeout (5s); server left in service, nothing changed"
    )
    assert r.lb.calls == [DRAIN, READY] and r.snaps.calls == []


def test_older_processes_past_the_drain_timeout_with_force_go_on() -> None:
    r = _reloaded_rig(uptime=0.0, gone_in=30.0, drain_timeout=5.0, drain_on_timeout="force")
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    [drain] = [s for s in r.journal.steps if s.step == "drain"]
    assert drain.detail == (
        "drain timeout: forcing while an HAProxy process older than the drain may route to web1 for "
        "25.0s more"
    )


# -- steps in order, each once; what the host's claim is held for (mutation testing's survivors)


def _three_steps() -> list[Any]:
    from orchestrator.model.spec import StepSpec

    return [
        StepSpec(kind="upload", label="upload app.tgz", timeout=30.0, src=Path("/a/app.tgz"), dest="/tmp/a"),
        StepSpec(kind="run", label="run install", timeout=40.0, command="/opt/app/bin/install /tmp/a"),
        StepSpec(kind="run", label="run restart", timeout=50.0, command="/opt/app/bin/restart"),
    ]


def _update_commands(r: Rig) -> list[str]:
    return [c for _, c in r.remotes.commands if "/opt/app/bin/" in c]


def test_three_update_steps_run_once_each_in_order_and_hold_the_claim_for_their_timeouts() -> None:
    r = rig(rollout_spec(hosts=[host_spec(steps=_three_steps())], snapshot_timeout=20.0))
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    assert len(r.remotes.uploads) == 1
    ran = _update_commands(r)
    assert len(ran) == 2 and "install" in ran[0] and "restart" in ran[1], ran
    assert [o for o in r.journal.outcomes() if o[0].startswith("update")] == [
        ("update[0]", "ok"),
        ("update[1]", "ok"),
        ("update[2]", "ok"),
    ]
    # a snapshot call, then each command, may take its bound: the claim covers it and a minute more
    assert r.journal.holds == [("web1", 80.0), ("web1", 100.0), ("web1", 110.0)]
    assert progress.running_step == -1 and progress.step_index == 3


def test_an_upload_after_a_command_moves_on_to_the_step_after_it() -> None:
    upload, install, restart = _three_steps()
    r = rig(rollout_spec(hosts=[host_spec(steps=[restart, upload, install])]))
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    assert len(r.remotes.uploads) == 1
    ran = _update_commands(r)
    assert len(ran) == 2 and "restart" in ran[0] and "install" in ran[1], ran
    assert [o[0] for o in r.journal.outcomes() if o[0].startswith("update")] == [
        "update[0]",
        "update[1]",
        "update[2]",
    ]


def test_interrupted_in_a_later_step_reverts_then_applies_every_step_again_from_the_first() -> None:
    """A worker died inside update[2]: revert, then update[0] (the upload) and update[1] again too,
    since the revert undid them."""
    r = rig(rollout_spec(hosts=[host_spec(steps=_three_steps())]))
    r.snaps.create(r.host.domain, "orch-r1", memory=True)
    open_row = r.journal.step_started(r.host.name, "update[2]", "")
    stored = Progress(snapshot="orch-r1", step_index=2, running_step=2, run_id="abc", journal_id=open_row)
    state, progress = r.drive(S.UPDATING, stored)
    assert state is S.SUCCEEDED, progress.error
    assert len(r.remotes.uploads) == 1  # update[0] again, after the revert
    ran = _update_commands(r)
    assert len(ran) == 2 and "install" in ran[0] and "restart" in ran[1], ran
    steps = [o for o in r.journal.outcomes() if o[0].startswith("update")]
    assert steps == [
        ("update[2]", "interrupted"),
        ("update[0]", "ok"),
        ("update[1]", "ok"),
        ("update[2]", "ok"),
    ]


def test_a_command_that_ended_unrecorded_is_followed_by_the_next_step_not_the_one_after() -> None:
    r = rig(rollout_spec(hosts=[host_spec(steps=_three_steps())], snapshot_memory=False))
    r.snaps.create(r.host.domain, "orch-R1", memory=False)
    r.remotes.stdout["update1-abc.rc"] = "ended with exit 0"
    state, progress = _interrupted_in_update1(r, snapshot="orch-R1")
    assert state is S.SUCCEEDED, progress.error
    ran = _update_commands(r)
    assert len(ran) == 1 and "restart" in ran[0], ran  # update[2] once; update[1] never again
    assert progress.step_index == 3 and progress.running_step == -1
    [step] = [s for s in r.journal.steps if s.step == "update[1]"]
    assert (step.outcome, step.exit_code) == ("ok", 0)
    assert step.detail == UNRECORDED.format(code=0)


UNRECORDED = "exit {code}, read from the host: it ended while nobody could record it (its output is lost)"


def test_a_command_that_ended_unrecorded_with_a_failure_fails_its_step_and_reverts() -> None:
    r = rig(rollout_spec(hosts=[host_spec(steps=_three_steps())], snapshot_memory=False))
    r.snaps.create(r.host.domain, "orch-R1", memory=False)
    r.remotes.stdout["update1-abc.rc"] = "ended with exit 3"
    state, progress = _interrupted_in_update1(r, snapshot="orch-R1")
    assert state is S.ROLLED_BACK
    assert progress.error == f"'run install' exited 3: {UNRECORDED.format(code=3)}"
    [step] = [s for s in r.journal.steps if s.step == "update[1]"]
    assert (step.outcome, step.exit_code, step.output_tail) == ("failed", 3, UNRECORDED.format(code=3))
    assert "restart" not in " ".join(_update_commands(r))  # update[2] never ran


def test_a_failed_command_journals_its_exit_code_and_the_last_20_lines_of_its_errors() -> None:
    r = rig()
    r.remotes.outcomes["install"] = 2
    r.remotes.stderr["install"] = "\n".join(f"error {n}" for n in range(1, 31))
    state, progress = r.drive()
    assert state is S.ROLLED_BACK
    assert progress.error == "'run install' exited 2: error 30"
    [step] = [s for s in r.journal.steps if s.step == "update[1]"]
    assert (step.outcome, step.exit_code) == ("failed", 2)
    assert step.output_tail.splitlines() == [f"error {n}" for n in range(11, 31)]


def test_a_host_picked_up_past_its_deadline_in_the_update_fails_naming_the_step() -> None:
    from orchestrator.model.playbook import Deadlines

    r = rig(rollout_spec(deadlines=Deadlines(host=10.0)))
    r.snaps.create(r.host.domain, "orch-R1", memory=True)
    stored = Progress(snapshot="orch-R1", step_index=1, host_started=r.clock.now - 60)
    state, progress = r.drive(S.UPDATING, stored)
    assert state is S.ROLLED_BACK
    assert progress.error == "the host deadline (10s) passed in update"


def _interrupted_in_update1(r: Rig, snapshot: str) -> tuple[HostState, Progress]:
    """A worker died inside update[1] (its marker still set), and a new tick picks the host up."""
    open_row = r.journal.step_started(r.host.name, "update[1]", "")
    stored = Progress(snapshot=snapshot, step_index=1, running_step=1, run_id="abc", journal_id=open_row)
    return r.drive(S.UPDATING, stored)


def test_interrupted_without_a_snapshot_the_leftover_is_stopped_and_the_host_left_out_saying_why() -> None:
    """Nothing will be reverted, so no memory revert ends the cut-off command: stop it over SSH."""
    r = rig(rollout_spec(snapshot_enabled=False))
    state, progress = _interrupted_in_update1(r, snapshot="")
    assert state is S.FAILED_OUT
    assert progress.error == (
        "update[1] was interrupted and there is no snapshot to return to; the server's state is unknown"
    )
    [(_, stop)] = r.remotes.commands
    assert stop == remote_commands.stop_script(
        remote_commands.pid_file("R1", W, 1), remote_commands.result_file("R1", W, 1, "abc")
    )
    assert r.snaps.calls == [] and READY not in r.lb.calls
    assert r.remotes.timeouts == [60.0]  # the stop script waits up to 30 s after SIGTERM, then SIGKILL


def test_interrupted_under_a_disk_snapshot_with_nothing_left_says_so_and_reverts() -> None:
    r = rig(rollout_spec(snapshot_memory=False))
    r.snaps.create(r.host.domain, "orch-R1", memory=False)
    r.remotes.stdout["kill -s TERM"] = ""  # the stop script found nothing and printed nothing
    state, progress = _interrupted_in_update1(r, snapshot="orch-R1")
    assert state is S.SUCCEEDED, progress.error
    [interrupted] = [s for s in r.journal.steps if s.outcome == "interrupted"]
    assert interrupted.detail == (
        "interrupted (worker lost); no leftover command; reverted to orch-R1, applying the update again"
    )


def test_a_leftover_that_cannot_be_stopped_is_never_reverted_under_and_the_host_stays_out() -> None:
    r = rig(rollout_spec(snapshot_memory=False))
    r.snaps.create(r.host.domain, "orch-R1", memory=False)
    r.snaps.calls.clear()
    r.remotes.outcomes["kill -s TERM"] = 1
    r.remotes.stderr["kill -s TERM"] = "sent TERM\ncould not stop group 4242"
    state, progress = _interrupted_in_update1(r, snapshot="orch-R1")
    assert state is S.FAILED_OUT
    assert progress.error == (
        "could not stop the cut-off update[1] on web1 (exit 1: could not stop group 4242); "
        "not reverting under it"
    )
    assert r.snaps.calls == [] and READY not in r.lb.calls


def test_marker_files_keep_their_names_across_versions() -> None:
    """A rollout resumed by a newer orchestrator reads the files an older one left on the host."""
    assert remote_commands.pid_file("R1", "web1", 2) == "/tmp/orchestrator-R1-web1-update2.pid"
    assert remote_commands.result_file("R1", "web1", 2, "abc") == "/tmp/orchestrator-R1-web1-update2-abc.rc"
    assert remote_commands.result_file("R1", "web1", 2, "") == "/tmp/orchestrator-R1-web1-update2-none.rc"
    # Only this host's status files of this rollout go, even for a host whose name holds "update".
    wrapped = remote_commands.wrap(
        "true", "/tmp/x.pid", remote_commands.result_file("R1", "update-srv", 0, "abc")
    )
    assert wrapped.startswith("rm -f /tmp/orchestrator-R1-update-srv-update*.rc; ")
    assert "[ $i -lt 30 ]" in remote_commands.stop_script("/tmp/x.pid", "/tmp/x.rc")  # SIGTERM's grace


def test_interrupted_under_a_memory_snapshot_only_looks_then_reverts_and_applies_it_all_again() -> None:
    r = rig()
    r.snaps.create(r.host.domain, "orch-R1", memory=True)
    r.snaps.calls.clear()
    state, progress = _interrupted_in_update1(r, snapshot="orch-R1")
    assert state is S.SUCCEEDED, progress.error
    look = remote_commands.status_script(
        remote_commands.pid_file("R1", W, 1), remote_commands.result_file("R1", W, 1, "abc")
    )
    assert r.remotes.commands[0] == (W, look)  # looked, never stopped: the revert ends it
    assert r.remotes.timeouts[0] == 10.0  # a frozen guest costs 10 s at most, then the revert goes on
    assert r.snaps.calls == [REVERT]
    [interrupted] = [s for s in r.journal.steps if s.outcome == "interrupted"]
    assert interrupted.detail == (
        "interrupted (worker lost); the revert replaces its memory; reverted to orch-R1, applying the "
        "update again"
    )


def test_a_command_step_journals_its_own_time_and_the_last_5_lines_of_its_output() -> None:
    r = rig()
    r.remotes.stdout["install"] = "\n".join(f"line {n}" for n in range(1, 11))
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    [step] = [s for s in r.journal.steps if s.step == "update[1]"]
    assert (step.outcome, step.detail, step.exit_code) == ("ok", "exit 0 in 0.01s", 0)
    assert step.output_tail.splitlines() == [f"line {n}" for n in range(6, 11)]
    assert step.work == pytest.approx(0.01, abs=0.005)  # the command's 0.01 s on the fake


def test_the_host_deadline_fails_the_host_past_it_not_at_it_and_names_the_step() -> None:
    from orchestrator.model.playbook import Deadlines

    r = rig(rollout_spec(deadlines=Deadlines(host=10.0)))
    r.lb.sessions[W] = 1  # the drain goes on past the deadline
    state, progress, _ = r.pipeline.advance(S.PENDING, Progress())
    assert state is S.DRAINING
    r.clock.advance(10.0 - (r.clock.now - progress.host_started))  # exactly at the deadline
    state, progress, _ = r.pipeline.advance(state, progress)
    assert state is S.DRAINING, progress.error  # at it: still going
    r.clock.advance(0.5)
    state, progress = r.drive(state, progress)
    assert state is S.FAILED
    assert progress.error == "the host deadline (10s) passed in drain"
