"""The drain, tick by tick, on fakes: what it polls, probes and warns, how long it waits each time, and
what the journal says about why it ended. The pipeline tests drive whole hosts; these pin the pace and
the words of the drain itself (written after a mutation run found them unchecked)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.host.decisions import Hold, Proceed
from orchestrator.engine.host.run import poll_delay
from orchestrator.model.playbook import Sessions
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState
from tests.unit.fakes import Rig, host_spec, rig, rollout_spec

S = HostState
W = "web1"
PROBE, WARN = "count-sessions", "wall bye"


def _sessions_rig(
    *, probe: bool = True, on_timeout: str = "postpone", created_ago: float | None = None
) -> Rig:
    """A host whose users have sessions the load balancer cannot see: probed every 0.5 s, warned every
    1 s. Without ``probe`` the playbook asks for sessions but this host has no probe of its own."""
    update = {"session_probe": PROBE, "session_warn": WARN} if probe else {}
    host = host_spec(W).model_copy(update=update)
    sessions = Sessions(probe=PROBE, interval=0.5, warn=WARN, warn_every=1.0, on_timeout=on_timeout)  # type: ignore[arg-type]
    return rig(rollout_spec([host], sessions=sessions), created_ago=created_ago)


def _commands(r: Rig, word: str) -> int:
    return sum(word in command for _, command in r.remotes.commands)


def _drain_step(r: Rig) -> Any:
    [step] = [s for s in r.journal.steps if s.step == "drain"]
    return step


def test_connections_are_polled_at_the_drain_pace_and_users_are_not_probed_while_any_remain() -> None:
    r = _sessions_rig()
    r.lb.sessions[W] = 2
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    assert state is S.DRAINING
    assert progress.detail == "2 connections left"
    assert delay == poll_delay(0.0)  # the connection pace, not the session probe's interval
    assert _commands(r, PROBE) == 0 and _commands(r, WARN) == 0


def test_users_probed_each_interval_warned_each_warn_every_and_the_drain_says_why_it_ended() -> None:
    r = _sessions_rig()
    r.lb.sessions[W] = 0
    r.remotes.stdout[PROBE] = "3"
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    assert (state, progress.detail, delay) == (S.DRAINING, "3 user sessions left", 0.5)
    assert (_commands(r, PROBE), _commands(r, WARN)) == (1, 1)
    assert r.remotes.timeouts == [30.0, 30.0]  # a probe or a warning that hangs is cut off
    probes_warns = []
    for _ in range(4):  # every 0.5 s: a probe each time, a warning every other time
        r.clock.advance(delay)
        state, progress, delay = r.pipeline.advance(state, progress)
        assert (state, progress.detail, delay) == (S.DRAINING, "3 user sessions left", 0.5)
        probes_warns.append((_commands(r, PROBE), _commands(r, WARN)))
    assert probes_warns == [(2, 1), (3, 2), (4, 2), (5, 3)]
    r.remotes.stdout[PROBE] = "0"
    r.clock.advance(delay)
    state, progress = r.drive(state, progress)
    assert state is S.SUCCEEDED
    drain = _drain_step(r)
    assert (drain.outcome, drain.detail) == ("ok", "no connections, no user sessions left")
    # Its own work: the five waits, and each of the 6 probes and 3 warnings (0.01 s each on the fake),
    # plus the real time of the load balancer calls (run.call times them).
    assert drain.work == pytest.approx(5 * 0.5 + 9 * 0.01, abs=0.005)  # + the fakes' own real time


@pytest.mark.parametrize(
    ("exit_code", "output", "shown"),
    [(1, "3", "'3'"), (0, "three", "'three'"), (0, "x" * 99 + "7", repr("x" * 79 + "7"))],
    ids=["exit 1 printing a number", "not a number", "long output: its last 80 characters"],
)
def test_a_session_probe_that_fails_or_prints_no_number_fails_the_host_untouched(
    exit_code: int, output: str, shown: str
) -> None:
    r = _sessions_rig()
    r.lb.sessions[W] = 0
    r.remotes.stdout[PROBE] = output
    r.remotes.outcomes[PROBE] = exit_code
    state, progress = r.drive()
    assert state is S.FAILED
    assert progress.error == (
        f"session probe on web1 exited {exit_code} printing {shown}; it must print the number of active "
        "user sessions"
    )
    assert r.lb.calls == [("drain", W), ("ready", W)] and r.snaps.calls == []


def test_no_user_left_is_not_probed_again_while_older_haproxy_processes_finish() -> None:
    r = _sessions_rig(created_ago=60)
    r.lb.uptime, r.lb.older_gone_in = 2.0, 4.0  # reloaded 2 s ago; older processes gone within 4 s
    r.lb.sessions[W] = 0
    r.remotes.stdout[PROBE] = "0"
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error
    # Probed once per interval over the 4 s wait (the last answer counts in between), not at every
    # one of the faster polls of the wait.
    ticks = sum(1 for _, st, _ in r.journal.saves if st is S.DRAINING)
    assert _commands(r, PROBE) <= 1 + 4.0 / 0.5 < ticks


def test_a_probe_within_its_interval_is_not_run_again() -> None:
    r = _sessions_rig()
    r.lb.sessions[W] = 0
    r.remotes.stdout[PROBE] = "3"
    state, progress, _ = r.pipeline.advance(S.PENDING, Progress())
    r.clock.advance(0.2)  # early: an operator's resume, a duplicate tick
    state, progress, delay = r.pipeline.advance(state, progress)
    assert _commands(r, PROBE) == 1 and progress.detail == "3 user sessions left"
    assert delay == 0.5  # the interval again, from this tick (never past the drain timeout)


def test_a_host_without_a_session_probe_drains_on_connections_alone() -> None:
    r = _sessions_rig(probe=False)
    r.lb.sessions[W] = 0
    state, _ = r.drive()
    assert state is S.SUCCEEDED
    assert r.remotes.commands and _commands(r, PROBE) == 0 and _commands(r, WARN) == 0
    assert (_drain_step(r).outcome, _drain_step(r).detail) == ("ok", "no connections left")


def test_the_drain_without_sessions_says_no_connections_left() -> None:
    r = rig()
    state, _ = r.drive()
    assert state is S.SUCCEEDED
    assert (_drain_step(r).outcome, _drain_step(r).detail) == ("ok", "no connections left")


def test_a_host_that_passed_the_gate_holds_no_reason_for_waiting() -> None:
    r = rig()
    state, progress = r.drive()
    assert state is S.SUCCEEDED
    assert (progress.held_by, progress.held_why, progress.passed_gate) == ("", "", True)


class _Gate:
    """A gate answering from a script: each tick takes the next answer, the last one repeats."""

    def __init__(self, *answers: Any, aborting: bool = False) -> None:
        self.answers = list(answers)
        self.abort = aborting

    def gate(self, host: Any, rollback: bool) -> Any:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def aborting(self) -> bool:
        return self.abort

    def postpone(self, host: Any) -> None:
        pass


def _gated(gate: _Gate, **overrides: Any) -> Rig:
    return rig(rollout_spec(**overrides), controls=gate)


def test_the_capacity_wait_starts_again_after_a_hold_for_another_reason() -> None:
    """4 s short of capacity, an operator's pause for a minute, then 4 s short again: neither stretch
    reaches the 5 s capacity timeout, so the host goes on; counting from the first would fail it."""
    capacity = Hold("capacity: 2 of 3 in service, need 3", 1.0, capacity=True)
    paused = Hold("the operator's pause", 1.0)
    r = _gated(_Gate(*[capacity] * 4, *[paused] * 60, *[capacity] * 4, Proceed()), capacity_timeout=5.0)
    state, progress = r.drive()
    assert state is S.SUCCEEDED, progress.error


def test_a_host_put_back_for_a_silent_hypervisor_ends_its_tick_once_then_goes_through_the_gate() -> None:
    r = rig()
    progress = Progress(outcome="hypervisor")
    state, progress, delay = r.pipeline.advance(S.PENDING, progress)
    assert (state, delay, progress.outcome) == (S.PENDING, 1.0, "")
    assert r.lb.calls == []  # nothing done this tick: the coordinator pauses the rollout for it
    state, progress = r.drive(state, progress)
    assert state is S.SUCCEEDED, progress.error


def test_a_tick_the_orchestrator_was_late_for_does_not_count_against_capacity() -> None:
    """The worker stalled 100 s (a restart) between an operator's pause and a capacity hold, then again
    inside the capacity hold: neither stall is the pool's shortage, so 3 s of waiting stays 3 s."""
    capacity = Hold("capacity: 2 of 3 in service, need 3", 1.0, capacity=True)
    gate = _Gate(Hold("the operator's pause", 1.0), capacity, capacity, capacity, Proceed())
    r = _gated(gate, capacity_timeout=5.0)
    state, progress, delay = r.pipeline.advance(S.PENDING, Progress())
    late = [100.0, 1.0, 100.0, 1.0]
    while delay is not None and state is S.PENDING:
        r.clock.advance(late.pop(0) if late else delay)
        state, progress, delay = r.pipeline.advance(state, progress)
    state, progress = r.drive(state, progress)
    assert state is S.SUCCEEDED, progress.error


def test_an_abort_before_the_update_puts_the_server_back_as_it_was_and_says_so() -> None:
    r = _gated(_Gate(Proceed(), aborting=True))
    state, progress = r.drive()
    assert state is S.FAILED
    assert progress.error == "aborted by an operator before the update began; put back as it was"
    assert r.lb.calls == [("ready", W)] and r.snaps.calls == []  # never drained, nothing changed


def test_a_rollback_is_never_interrupted_by_an_abort_or_the_host_deadline() -> None:
    """Going back to the known-good version is what an abort or a deadline would want anyway."""
    from orchestrator.model.playbook import Deadlines

    r = _gated(_Gate(Proceed(), aborting=True), deadlines=Deadlines(host=10.0))
    r.snaps.create(r.host.domain, "orch-R1", memory=True)
    done = Progress(snapshot="orch-R1", host_started=r.clock.now - 3600).for_rollback()
    state, progress = r.drive(S.SUCCEEDED, done)
    assert state is S.ROLLED_BACK, progress.error
