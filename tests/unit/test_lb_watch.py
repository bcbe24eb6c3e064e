"""The load balancer's state is watched, not assumed: the pipeline confirms its server before each
handler and re-asserts a lost state at once; the reconciler's guard does the same for every host a
rollout holds out; a tick that finds another HAProxy process re-asserts them all first. On fakes: the
fake load balancer's ``reload()`` forgets every runtime admin state, as HAProxy does without saved
server states."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from orchestrator.adapters.loadbalancers.base import AdminState
from orchestrator.engine.host import lbstate
from orchestrator.engine.rollout import watch
from orchestrator.errors import LoadBalancerError
from orchestrator.model.progress import Progress
from orchestrator.model.records import HostStatus, Rollout
from orchestrator.model.states import HostState, RolloutState
from tests.unit.fakes import FakeLoadBalancer, Rig, host_spec, rig, rollout_spec

S = HostState
A = AdminState
W = "web1"


def advance_until(r: Rig, state: HostState) -> Progress:
    """Drive the rig's pipeline until it waits in ``state``; returns its progress."""
    current, progress = S.PENDING, Progress()
    for _ in range(1000):
        current, progress, delay = r.pipeline.advance(current, progress)
        if current is state:
            return progress
        assert delay is not None, f"ended in {current} before reaching {state}"
        r.clock.advance(delay)
    raise AssertionError(f"never waited in {state}")


# -- the pipeline


def test_maint_lost_mid_checks_is_set_again_before_the_next_probe_and_recorded() -> None:
    r = rig()
    progress = advance_until(r, S.CHECKING)
    probes = len(r.checks.probes)
    r.lb.reload()  # HAProxy reloaded without saved states: web1 back in service mid-checks
    assert r.lb.state(W).in_service
    state, progress, _ = r.pipeline.advance(S.CHECKING, progress)
    assert r.lb.admin[W] is A.MAINT
    assert r.lb.calls[-1] == ("maint", W) and len(r.checks.probes) == probes + 1
    assert r.journal.actions == [
        (W, "lb_reasserted", "server web1 was ready (UP) in checking, expected maint: set maint again")
    ]
    state, _ = r.drive(state, progress)
    assert state is S.SUCCEEDED
    assert r.lb.calls == [("drain", W), ("maint", W), ("maint", W), ("ready", W)]


def test_nothing_lost_nothing_set_again() -> None:
    r = rig()
    assert r.drive()[0] is S.SUCCEEDED
    assert r.lb.calls == [("drain", W), ("maint", W), ("ready", W)]
    assert r.journal.actions == []


def test_the_reload_between_update_steps_is_caught_before_the_next_step() -> None:
    r = rig()
    seen: list[AdminState] = []

    def reload_once_at_the_upload(lb: FakeLoadBalancer) -> None:
        if r.remotes.uploads and not seen:
            seen.append(lb.admin[W])
            lb.reload()

    r.lb.on_state = reload_once_at_the_upload
    assert r.drive()[0] is S.SUCCEEDED
    assert seen == [A.MAINT]
    # Set again before the install ran: the re-assertion comes before the second step's command.
    assert r.lb.calls == [("drain", W), ("maint", W), ("maint", W), ("ready", W)]
    assert [a for _, a, _ in r.journal.actions] == ["lb_reasserted"]
    assert "in updating" in r.journal.actions[0][2]


def test_drain_lost_while_draining_is_set_again() -> None:
    r = rig()
    r.lb.sessions[W] = 2
    progress = advance_until(r, S.DRAINING)
    r.lb.reload()
    r.lb.sessions[W] = 0
    state, _ = r.drive(S.DRAINING, progress)
    assert state is S.SUCCEEDED
    assert r.lb.calls[:3] == [("drain", W), ("drain", W), ("maint", W)]
    assert "expected drain" in r.journal.actions[0][2]


def test_a_stale_saved_maint_while_returning_is_undone() -> None:
    # A reload that loads a state file saved before `ready` brings back maint: the host would wait for
    # an UP that never comes and be rolled back. Returning re-asserts ready instead.
    r = rig()
    r.lb.statuses_after_ready = ["UP 1/2", "UP"]  # the second ready is the one that comes UP
    progress = advance_until(r, S.RETURNING)
    r.lb.admin[W] = A.MAINT
    state, _ = r.drive(S.RETURNING, progress)
    assert state is S.SUCCEEDED
    assert r.lb.calls[-2:] == [("ready", W), ("ready", W)]
    assert "expected ready" in r.journal.actions[0][2]


def test_an_unreachable_load_balancer_during_the_confirmation_pauses_like_any_other_call() -> None:
    r = rig(attempts=1)  # no retries: the process-wide retry counter stays as test_metrics expects
    progress = advance_until(r, S.CHECKING)
    r.lb.errors["state"] = [LoadBalancerError("refused", transient=True)] * 2
    state, progress, delay = r.pipeline.advance(S.CHECKING, progress)
    assert state is S.CHECKING and delay is not None and progress.blocked
    assert r.drive(state, progress)[0] is S.SUCCEEDED


@pytest.mark.parametrize(
    ("state", "entered", "want"),
    [
        (S.PENDING, False, None),
        (S.DRAINING, False, None),
        (S.DRAINING, True, A.DRAIN),
        (S.OUT_OF_POOL, False, A.MAINT),
        (S.SNAPSHOTTING, False, A.MAINT),
        (S.UPDATING, False, A.MAINT),
        (S.CHECKING, False, A.MAINT),
        (S.REVERTING, False, A.MAINT),
        (S.VERIFYING, False, A.MAINT),
        (S.FAILED_OUT, False, A.MAINT),
        (S.RETURNING, False, None),
        (S.RETURNING, True, A.READY),
        (S.RESTORING, True, A.READY),
        (S.SUCCEEDED, False, None),
        (S.ROLLED_BACK, False, None),
    ],
)
def test_what_each_state_expects(state: HostState, entered: bool, want: AdminState | None) -> None:
    assert lbstate.expected(state, Progress(entered=entered)) is want
    assert lbstate.held_out(state, Progress(entered=entered)) is (None if want is A.READY else want)


# -- the guard and the tick's instance check, over a small in-memory store


@dataclass
class MiniStore:
    """What watch.py uses of the rollout store. ``moves`` changes a host's state on its next read
    through ``host()`` (its tick moved it meanwhile)."""

    rollout: Rollout
    statuses: dict[str, HostStatus]
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    moves: dict[str, HostState] = field(default_factory=dict)

    def active_rollouts(self) -> list[Rollout]:
        return [self.rollout]

    def hosts(self, rollout_id: str) -> list[HostStatus]:
        return list(self.statuses.values())

    def host(self, rollout_id: str, name: str) -> HostStatus:
        if name in self.moves:
            self.statuses[name] = replace(self.statuses[name], state=self.moves.pop(name))
        return self.statuses[name]

    def record_action(self, rollout_id: str, action: str, actor: str, detail: str = "") -> None:
        self.rows.append((action, actor, detail))


NAMES = ("web1", "web2", "web3", "web4")


def farm(states: dict[str, tuple[HostState, bool]]) -> tuple[MiniStore, FakeLoadBalancer]:
    spec = rollout_spec([host_spec(n) for n in NAMES])
    rollout = Rollout("R1", "app-v2", "web", RolloutState.RUNNING, 0, 0.0, 0.0, None, "", spec)
    statuses = {
        n: HostStatus(
            n,
            0,
            states.get(n, (S.PENDING, False))[0],
            Progress(entered=states.get(n, (S.PENDING, False))[1]),
            0.0,
        )
        for n in NAMES
    }
    lb = FakeLoadBalancer()
    for n in NAMES:
        lb.admin[n] = A.READY
    return MiniStore(rollout, statuses), lb


def test_the_guard_reasserts_every_lost_out_of_service_state_and_records_it() -> None:
    store, lb = farm({"web1": (S.UPDATING, False), "web2": (S.DRAINING, True), "web3": (S.FAILED_OUT, False)})
    lines = watch.guard(store, lambda config: lb)
    assert lb.admin == {"web1": A.MAINT, "web2": A.DRAIN, "web3": A.MAINT, "web4": A.READY}
    assert [(a, who) for a, who, _ in store.rows] == [("lb_reasserted", "reconciler")] * 3
    assert "re-asserted web1 maint (was ready, UP, in updating)" in store.rows[0][2]
    assert len(lines) == 3 and all(line.startswith("R1 ") for line in lines)
    lb.calls.clear()
    assert watch.guard(store, lambda config: lb) == []  # all in place now: nothing set
    assert lb.calls == []


def test_the_guard_never_sets_ready_and_leaves_maint_on_a_draining_host() -> None:
    store, lb = farm({"web1": (S.RETURNING, True), "web2": (S.DRAINING, True), "web3": (S.DRAINING, False)})
    lb.admin["web1"] = A.MAINT
    lb.admin["web2"] = A.MAINT
    assert watch.guard(store, lambda config: lb) == []
    assert lb.calls == []


def test_the_guard_skips_a_host_its_tick_moved_meanwhile() -> None:
    store, lb = farm({"web1": (S.CHECKING, False)})
    store.moves["web1"] = S.RETURNING  # ready was just set by its tick: the guard must not undo it
    assert watch.guard(store, lambda config: lb) == []
    assert lb.calls == [] and store.rows == []


def test_the_guard_says_an_unreachable_load_balancer_and_goes_on() -> None:
    store, lb = farm({"web1": (S.UPDATING, False)})
    lb.errors["state"] = [LoadBalancerError("refused", transient=True)]
    assert watch.guard(store, lambda config: lb) == []
    assert watch.guard(store, lambda config: lb) != []  # next round it is back


def test_a_new_instance_reasserts_everything_held_out_before_the_tick_goes_on() -> None:
    store, lb = farm({"web1": (S.UPDATING, False), "web2": (S.CHECKING, False), "web3": (S.SUCCEEDED, False)})
    lb.admin.update(web1=A.MAINT, web2=A.MAINT)
    progress = Progress()
    watch.notice_new_instance(store, store.rollout, lb, progress)  # first look: remembered, nothing said
    assert (progress.lb_instance, progress.lb_pid, store.rows) == ("fake/100", 100, [])
    watch.notice_new_instance(store, store.rollout, lb, progress)  # same process: nothing
    assert store.rows == []
    lb.reload()
    watch.notice_new_instance(store, store.rollout, lb, progress)
    assert (progress.lb_instance, progress.lb_pid) == ("fake/101", 101)
    assert lb.admin == {"web1": A.MAINT, "web2": A.MAINT, "web3": A.READY, "web4": A.READY}
    assert store.rows == [
        (
            "lb_restarted",
            "orchestrator",
            "HAProxy restarted or reloaded (pid 100 -> 101): re-asserted web1 maint (was ready, UP, in "
            "updating), web2 maint (was ready, UP, in checking)",
        )
    ]


def test_a_reload_that_kept_the_states_is_noted_with_nothing_to_reassert() -> None:
    store, lb = farm({"web1": (S.UPDATING, False)})
    lb.admin["web1"] = A.MAINT
    progress = Progress(lb_instance="fake/100", lb_pid=100)
    lb.reload(keep_states=True)
    watch.notice_new_instance(store, store.rollout, lb, progress)
    assert store.rows == [
        (
            "lb_restarted",
            "orchestrator",
            "HAProxy restarted or reloaded (pid 100 -> 101): nothing to re-assert; in place: web1 maint",
        )
    ]
    assert lb.calls == []


def test_progress_keeps_the_instance_and_reads_records_from_before_it() -> None:
    p = Progress(lb_instance="vm/27845@1796165044", lb_pid=27845)
    assert Progress.from_json(p.to_json()) == p
    old = {k: v for k, v in Progress().to_json().items() if not k.startswith("lb_")}
    assert Progress.from_json(old).lb_instance == ""
