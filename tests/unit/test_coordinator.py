"""The rollout's coordinator and its recovery, over a real SQLite store in tmp_path, with the adapters
faked and the broker replaced by a list: a tick is "sent" by appending it, and "delivered" by calling
coordinator.tick with it, in whatever order (or as often, or never) a test wants. No Celery, no sleeps;
the store's time is a fake clock, which each delivery moves by the tick's countdown.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.adapters.loadbalancers.base import AdminState
from orchestrator.engine.rollout import coordinator, operations, recovery
from orchestrator.engine.rollout.claims import LEASE
from orchestrator.engine.rollout.outage import PatientStore
from orchestrator.engine.secrets import SecretValues
from orchestrator.errors import HypervisorError, RemoteError, StoreUnavailable
from orchestrator.model.progress import Progress
from orchestrator.model.records import HostStatus, Rollout
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.db import Store
from tests.unit.fakes import FakeClock, FakeLoadBalancer, FakeRuntime, host_spec, rollout_spec, sqlite_store

S = HostState
R = RolloutState
RID = "R1"
WORKER = "worker-a/1"  # another machine's worker: only its lease's expiry frees a host it holds


@dataclass(frozen=True)
class Tick:
    rollout_id: str
    host: str
    token: str
    delay: float


@dataclass
class ListScheduler:
    """The broker as a list: ``send_tick`` queues, the test delivers. ``sent`` keeps every tick."""

    queue: list[Tick] = field(default_factory=list)
    sent: list[Tick] = field(default_factory=list)

    def send_tick(self, rollout_id: str, host: str, token: str, delay: float = 0.0) -> None:
        tick = Tick(rollout_id, host, token, delay)
        self.queue.append(tick)
        self.sent.append(tick)

    def take(self, host: str | None = None) -> Tick:
        """The first queued tick (of ``host``), out of the queue."""
        found = next(t for t in self.queue if host is None or t.host == host)
        self.queue.remove(found)
        return found

    def hosts(self) -> list[str]:
        return [t.host for t in self.queue]


@dataclass
class Farm:
    """One rollout over the store, its fake adapters, the list broker and the store's clock."""

    store: Store
    runtime: FakeRuntime
    scheduler: ListScheduler
    clock: FakeClock
    delivered: list[Tick] = field(default_factory=list)

    def start(self) -> None:
        coordinator.start(self.store, self.scheduler, RID)

    def deliver(self, tick: Tick, *, store: Store | None = None, owner: str = WORKER) -> None:
        self.clock.advance(tick.delay)
        self.delivered.append(tick)
        coordinator.tick(
            store or self.store, self.runtime, self.scheduler, tick.rollout_id, tick.host, tick.token, owner
        )

    def step(self, host: str | None = None) -> Tick:
        tick = self.scheduler.take(host)
        self.deliver(tick)
        return tick

    def run(self, *, until: Callable[[], bool] = lambda: False, limit: int = 500) -> None:
        """Deliver queued ticks in order until none is left (or ``until`` holds)."""
        for _ in range(limit):
            if until() or not self.scheduler.queue:
                return
            self.step()
        raise AssertionError(f"still ticking after {limit} ticks: {self.scheduler.queue}")

    def rollout(self) -> Rollout:
        rollout = self.store.rollout(RID)
        assert rollout is not None
        return rollout

    def host(self, name: str) -> HostStatus:
        return self.store.host(RID, name)

    def states(self) -> dict[str, HostState]:
        return {h.name: h.state for h in self.store.hosts(RID)}

    def actions(self) -> list[str]:
        return [action for _, action, _, _ in self.store.actions(RID)]

    def lb_calls(self, server: str) -> list[str]:
        return [method for method, name in self.runtime.lb.calls if name == server]


NAMES = ("web1", "web2", "web3", "web4")


def farm(tmp_path: Path, batches: list[list[str]], **overrides: object) -> Farm:
    names = sorted({h for batch in batches for h in batch})
    spec = rollout_spec([host_spec(n) for n in names], batches, **overrides)
    clock = FakeClock()
    store = sqlite_store(tmp_path, clock)
    store.create_rollout(spec)
    runtime = FakeRuntime(FakeLoadBalancer(servers=list(NAMES)))
    return Farm(store, runtime, ListScheduler(), clock)


# -- start -> batches -> finish


def test_batches_run_one_after_another_and_the_rollout_succeeds(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2", "web3"]])
    f.start()
    assert f.rollout().state is R.RUNNING
    assert f.scheduler.queue == [Tick(RID, "web1", f.host("web1").token, 0.0)]  # the first batch, at once
    f.run(until=lambda: f.scheduler.hosts() != ["web1"])
    # The second batch starts, both hosts at once, only once the first batch is done.
    assert f.states() == {"web1": S.SUCCEEDED, "web2": S.PENDING, "web3": S.PENDING}
    assert sorted(f.scheduler.hosts()) == ["web2", "web3"] and f.rollout().current_batch == 1
    assert f.lb_calls("web1") == ["drain", "maint", "ready"] and f.lb_calls("web2") == []
    f.run()
    assert f.states() == dict.fromkeys(["web1", "web2", "web3"], S.SUCCEEDED)
    rollout = f.rollout()
    assert (rollout.state, rollout.reason, rollout.finished_at) == (R.SUCCEEDED, "3 hosts updated", f.clock())
    for name in ("web2", "web3"):
        assert f.lb_calls(name) == ["drain", "maint", "ready"]
    assert {c[1] for c in f.runtime.snaps.calls if c[0] == "create"} == {"web1-vm", "web2-vm", "web3-vm"}
    # A tick delivered after the end does nothing.
    before = list(f.runtime.lb.calls)
    f.deliver(f.delivered[-1])
    assert f.runtime.lb.calls == before and f.scheduler.queue == []


@pytest.mark.parametrize(
    ("retention", "delete_fails", "left", "recorded"),
    [
        ("delete_on_success", False, [], "snapshot_deleted"),
        ("delete_on_success", True, ["orch-R1"], "snapshot_kept"),
        ("keep", False, ["orch-R1"], None),
    ],
)
def test_snapshot_retention_applies_once_the_whole_rollout_succeeded(
    tmp_path: Path, retention: str, delete_fails: bool, left: list[str], recorded: str | None
) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], snapshot_retention=retention)
    if delete_fails:
        from orchestrator.errors import HypervisorError

        f.runtime.snaps.errors["delete"] = [HypervisorError("delete refused", domain="web1-vm")] * 2
    f.start()
    f.run(until=lambda: f.states()["web1"] is S.SUCCEEDED)
    assert f.runtime.snaps.list("web1-vm") == ["orch-R1"]  # kept while the rollout runs: rollback needs it
    f.run()
    assert f.rollout().state is R.SUCCEEDED
    assert f.runtime.snaps.list("web1-vm") == left and f.runtime.snaps.list("web2-vm") == left
    rows = [(a, d) for _, a, _, d in f.store.actions(RID) if a.startswith("snapshot_")]
    if recorded is None:
        assert rows == []
    else:
        assert [a for a, _ in rows] == [recorded, recorded]
        assert {who for _, a, who, _ in f.store.actions(RID) if a == recorded} == {"orchestrator"}
        assert all(isinstance(x, SecretValues) for x in f.runtime.secrets) and f.runtime.secrets
        assert rows[0][1].startswith("web1: orch-R1")
        assert ("delete refused" in rows[0][1]) is delete_fails


# -- approval between batches


def approval_farm(tmp_path: Path, **overrides: object) -> Farm:
    f = farm(tmp_path, [["web1"], ["web2"]], approve_after=[1], **overrides)
    f.start()
    f.run()
    return f


def test_a_batch_that_needs_approval_waits_for_it_and_approve_starts_the_next(tmp_path: Path) -> None:
    f = approval_farm(tmp_path)
    rollout = f.rollout()
    assert rollout.state is R.AWAITING_APPROVAL and f.scheduler.queue == []  # nothing ticks meanwhile
    assert rollout.reason == (
        f"batch 1 done; `orchestrator approve {RID} --as NAME` or "
        f"`orchestrator reject {RID} --as NAME --reason WHY` (after 14400s: reject)"
    )
    assert f.store.actions(RID)[0][1:] == ("approval_requested", "orchestrator", "after batch 1")
    assert f.states() == {"web1": S.SUCCEEDED, "web2": S.PENDING} and f.host("web2").token == ""
    assert f.actions() == ["approval_requested"]
    recovery.reconcile(f.store, f.scheduler, clock=f.clock)  # the reconciler leaves it waiting
    assert f.scheduler.queue == [] and f.rollout().state is R.AWAITING_APPROVAL
    said = operations.approve(f.store, f.scheduler, RID, "alice")
    assert said == "approved by alice: batch 2 starts (web2)"
    assert f.scheduler.hosts() == ["web2"] and f.rollout().state is R.RUNNING
    f.run()
    assert f.rollout().state is R.SUCCEEDED and f.states()["web2"] is S.SUCCEEDED


def test_reject_halts_and_the_next_batch_never_starts(tmp_path: Path) -> None:
    f = approval_farm(tmp_path)
    operations.reject(f.store, f.scheduler, RID, "bob", "canary too slow")
    rollout = f.rollout()
    assert (rollout.state, rollout.reason) == (R.HALTED, "halted: rejected by bob: canary too slow")
    assert f.states() == {"web1": S.SUCCEEDED, "web2": S.SKIPPED}
    assert f.scheduler.queue == [] and f.lb_calls("web2") == []
    assert f.runtime.snaps.list("web1-vm") == ["orch-R1"]  # not a success: retention does not apply


def test_reject_under_rollback_all_reverts_the_hosts_already_done(tmp_path: Path) -> None:
    f = approval_farm(tmp_path, on_failure="rollback_all")
    operations.reject(f.store, f.scheduler, RID, "bob", "canary too slow")
    assert f.rollout().state is R.ROLLING_BACK and f.scheduler.hosts() == ["web1"]
    f.run()
    assert f.rollout().state is R.ROLLED_BACK
    assert f.states() == {"web1": S.ROLLED_BACK, "web2": S.SKIPPED}
    assert ("revert", "web1-vm", "orch-R1") in f.runtime.snaps.calls
    # Out again (maint, then maint once more as the revert begins), reverted, back in.
    assert f.lb_calls("web1") == ["drain", "maint", "ready", "drain", "maint", "maint", "ready"]


@pytest.mark.parametrize(("decision", "final"), [("approve", R.SUCCEEDED), ("reject", R.HALTED)])
def test_an_approval_that_times_out_is_decided_by_the_reconciler(
    tmp_path: Path, decision: str, final: RolloutState
) -> None:
    f = approval_farm(tmp_path, approval_timeout=600.0, on_approval_timeout=decision)
    f.clock.advance(599)
    assert recovery.reconcile(f.store, f.scheduler, clock=f.clock) == []
    f.clock.advance(1)
    (line,) = recovery.reconcile(f.store, f.scheduler, clock=f.clock)
    assert line == f"{RID} approval timed out after 600s: " + (
        "approved by orchestrator: batch 2 starts (web2)"
        if decision == "approve"
        else "rejected by orchestrator: the rollout stops here"
    )
    assert f.actions()[-2:] == [decision, "resume"]
    f.run()
    assert f.rollout().state is final


# -- abort


def test_abort_puts_a_draining_host_back_untouched_and_skips_the_rest(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]])
    f.runtime.lb.sessions["web1"] = 5
    f.start()
    f.step()
    assert f.states()["web1"] is S.DRAINING and f.scheduler.hosts() == ["web1"]
    said = operations.abort(f.store, f.scheduler, RID, "carol", "wrong release")
    assert said.startswith("aborting: 1 hosts will not start")
    assert f.rollout().state is R.ABORTING and f.states()["web2"] is S.SKIPPED
    f.run()
    rollout = f.rollout()
    assert rollout.state is R.ABORTED and rollout.reason == "aborted: 1 failed, 1 skipped"
    assert f.lb_calls("web1") == ["drain", "ready"] and f.lb_calls("web2") == []
    assert f.runtime.snaps.calls == [] and f.runtime.pool.commands == []
    assert "aborted by an operator" in f.host("web1").progress.error
    assert [t.host for t in f.scheduler.sent] == ["web1", "web1"]  # web2 never got a tick


def test_abort_lets_a_host_past_its_update_finish_and_then_ends(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]])
    f.start()
    f.step()
    assert f.states()["web1"] is S.CHECKING
    operations.abort(f.store, f.scheduler, RID, "carol", "wrong release")
    f.run()
    assert f.rollout().state is R.ABORTED
    assert f.states() == {"web1": S.SUCCEEDED, "web2": S.SKIPPED}
    assert f.runtime.snaps.list("web1-vm") == ["orch-R1"]  # an abort is no success: the snapshot stays


# -- rollback_all


def test_a_failure_under_rollback_all_reverts_every_updated_host_newest_first(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"], ["web3"], ["web4"]], on_failure="rollback_all")
    f.runtime.pool.errors["upload@web3"] = [
        RemoteError("cannot upload /a/app.tgz to web3:/tmp/a: the local file does not exist", host="web3")
    ]
    f.start()
    f.run(until=lambda: f.rollout().state is not R.RUNNING)
    rollout = f.rollout()  # web3 failed: the rollback of the others begins, nothing else starts
    assert (rollout.state, rollout.reason) == (R.ROLLING_BACK, "rollback_all after failures")
    assert f.states()["web4"] is S.SKIPPED and f.scheduler.hosts() == ["web2"]
    f.run()
    rollout = f.rollout()
    assert rollout.state is R.ROLLED_BACK
    assert "web3 rolled_back: cannot upload /a/app.tgz" in rollout.reason
    assert f.states() == {
        "web1": S.ROLLED_BACK,
        "web2": S.ROLLED_BACK,
        "web3": S.ROLLED_BACK,
        "web4": S.SKIPPED,
    }
    reverts = [c[1] for c in f.runtime.snaps.calls if c[0] == "revert"]
    assert reverts == ["web3-vm", "web2-vm", "web1-vm"]  # the failed one itself, then newest first
    assert f.lb_calls("web4") == [] and f.host("web4").token == ""
    for name in ("web1", "web2"):
        assert f.host(name).progress.rollback
        assert f.lb_calls(name)[-4:] == ["drain", "maint", "maint", "ready"]  # out again, reverted, back
    assert f.runtime.snaps.list("web1-vm") == ["orch-R1"]  # kept: not a success


def test_a_connection_lost_mid_command_reverts_that_host_and_within_the_budget_the_rollout_goes_on(
    tmp_path: Path,
) -> None:
    from orchestrator.model.playbook import FailureBudget

    f = farm(tmp_path, [["web1"], ["web2"]], failure_budget=FailureBudget(count=1, percent="50%"))
    f.runtime.pool.errors["run@web1"] = [
        RemoteError("connection to web1 was lost after 2.0 s while running install", host="web1")
    ]
    f.start()
    f.run()
    rollout = f.rollout()
    assert rollout.state is R.PARTIAL and "within the failure budget" in rollout.reason
    assert "web1 rolled_back: connection to web1 was lost" in rollout.reason
    assert f.states() == {"web1": S.ROLLED_BACK, "web2": S.SUCCEEDED}
    assert [c[:2] for c in f.runtime.snaps.calls if c[0] == "revert"] == [("revert", "web1-vm")]


# -- tokens: a tick delivered twice, or from a superseded chain, is dropped


def test_a_tick_delivered_twice_is_dropped_the_second_time(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    first = f.step()
    assert f.states()["web1"] is S.CHECKING and len(f.scheduler.queue) == 1
    seen = (f.host("web1"), list(f.runtime.lb.calls), list(f.runtime.checks.probes))
    f.deliver(first)  # the broker redelivers it
    assert (f.host("web1"), f.runtime.lb.calls, f.runtime.checks.probes) == seen
    assert len(f.scheduler.queue) == 1  # still one chain
    f.run()
    assert f.rollout().state is R.SUCCEEDED
    assert f.runtime.checks.probes == ["http new"] * 3


def test_a_restarted_chain_supersedes_the_old_one_the_host_never_has_two(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    f.step()
    coordinator.enqueue(f.store, f.scheduler, RID, "web1")  # say a resume while its tick was delayed
    old, new = f.scheduler.queue
    assert old.token != new.token == f.host("web1").token
    probes = len(f.runtime.checks.probes)
    f.deliver(f.scheduler.take())  # the old chain's tick: dropped, and it sends nothing
    assert f.scheduler.queue == [new] and len(f.runtime.checks.probes) == probes
    f.run()
    assert f.rollout().state is R.SUCCEEDED and f.runtime.checks.probes == ["http new"] * 3


# -- leases: one worker at a time on a host


def test_a_host_held_by_another_live_worker_is_looked_at_again_later(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    tick = f.scheduler.queue[0]
    assert f.store.claim_host(RID, "web1", tick.token, "worker-b/7", LEASE) == "claimed"
    f.step()
    assert f.scheduler.queue == [Tick(RID, "web1", tick.token, 1.0)]  # same chain, a second later
    assert f.states()["web1"] is S.PENDING and f.runtime.lb.calls == []
    f.clock.advance(LEASE)  # worker-b died on another machine: its lease runs out
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_a_lease_held_by_a_dead_process_of_this_machine_is_free_at_once(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    gone = subprocess.Popen(["true"])
    gone.wait()
    tick = f.scheduler.queue[0]
    f.store.claim_host(RID, "web1", tick.token, f"{socket.gethostname()}/{gone.pid}", LEASE)
    f.step()
    assert f.states()["web1"] is S.CHECKING


def test_the_lease_is_released_after_each_tick(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    f.step()
    tick = f.scheduler.queue[0]
    # Right after a tick (lease far from expired), another worker may take the host.
    assert f.store.claim_host(RID, "web1", tick.token, "worker-b/7", LEASE) == "claimed"


# -- lost ticks, found by the reconciler


class DownStore(Store):
    """A store whose method ``down_at`` does not answer for its next ``times`` calls."""

    down_at = ""
    times = 1

    def __getattribute__(self, name: str) -> Any:
        found = object.__getattribute__(self, name)
        if name != object.__getattribute__(self, "down_at") or not callable(found):
            return found

        def down(*args: Any, **kwargs: Any) -> Any:
            if self.times > 0:
                self.times -= 1
                raise StoreUnavailable("ORCH_DATABASE_URL: the store does not answer")
            return found(*args, **kwargs)

        return down


def test_a_first_tick_that_never_came_is_sent_again_by_the_reconciler(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]])
    f.start()
    lost = f.scheduler.take()  # the broker lost it
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0) == []  # it may still be on its way
    f.clock.advance(119)
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0) == []  # a first tick gets 120 s
    f.clock.advance(1)
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0) == [f"{RID} web1: resumed in pending"]
    (again,) = f.scheduler.queue
    assert again.host == "web1" and again.token != lost.token
    f.deliver(lost)  # it was only late after all: its chain was replaced, it is dropped
    assert f.scheduler.queue == [again] and f.runtime.lb.calls == []
    f.run()
    assert f.rollout().state is R.SUCCEEDED
    assert ("resume", "reconciler") in [(a, who) for _, a, who, _ in f.store.actions(RID)]


def test_a_host_in_flight_whose_tick_was_lost_is_resumed_where_it_stands(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    f.step()
    f.scheduler.take()  # lost
    f.clock.advance(29)
    assert recovery.reconcile(f.store, f.scheduler) == []  # quiet for 30 s by default
    f.clock.advance(1)
    assert recovery.reconcile(f.store, f.scheduler) == [f"{RID} web1: resumed in checking"]
    assert recovery.reconcile(f.store, f.scheduler) == []  # a new chain counts as progress
    f.run()
    assert f.rollout().state is R.SUCCEEDED and f.runtime.lb.calls.count(("drain", "web1")) == 1


def test_a_quiet_host_that_a_live_worker_holds_is_left_alone(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    f.step()
    tick = f.scheduler.take()
    f.store.claim_host(RID, "web1", tick.token, "worker-b/7", LEASE)  # acting in a long command
    f.clock.advance(31)
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0) == []
    f.clock.advance(LEASE)  # and then it died
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0) == [f"{RID} web1: resumed in checking"]


def test_a_batch_that_ended_while_nobody_moved_on_is_moved_on_by_the_reconciler(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], stabilize_successes=1)
    down = DownStore(f.store.url, clock=f.clock)
    down.down_at = "claim_next_batch"  # web1 is done; the store goes before the next batch is claimed
    f.start()
    f.deliver(f.scheduler.take(), store=down)
    f.scheduler.take()  # and the tick sent to try again is lost
    assert f.states() == {"web1": S.SUCCEEDED, "web2": S.PENDING} and f.rollout().current_batch == 0
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0) == [f"{RID} moved on: running, batch 2"]
    assert f.scheduler.hosts() == ["web2"]
    f.run()
    assert f.rollout().state is R.SUCCEEDED


# -- two workers finishing the last hosts of a batch at once


class RacingStore(Store):
    """Worker A's view of the store: on its first read of the hosts (in host_done, after it read the
    rollout's batch), ``meanwhile`` runs: worker B finishing its host at the same moment."""

    meanwhile: Callable[[], None] | None = None

    def hosts(self, rollout_id: str) -> list[HostStatus]:
        run, self.meanwhile = self.meanwhile, None
        if run is not None:
            run()
        return super().hosts(rollout_id)


@pytest.mark.parametrize("approval", [False, True])
def test_two_workers_finishing_a_batch_at_once_start_the_next_exactly_once(
    tmp_path: Path, approval: bool
) -> None:
    f = farm(
        tmp_path,
        [["web1", "web2"], ["web3"]],
        stabilize_successes=1,  # each host goes all the way in one tick
        approve_after=[1] if approval else [],
    )
    worker_a = RacingStore(f.store.url, clock=f.clock)
    f.start()
    tick1, tick2 = f.scheduler.take("web1"), f.scheduler.take("web2")
    raced: list[bool] = []

    def worker_b_finishes_web2() -> None:
        raced.append(f.rollout().current_batch == 0)
        f.deliver(tick2, owner="worker-b/2")

    worker_a.meanwhile = worker_b_finishes_web2
    f.deliver(tick1, store=worker_a)
    assert raced == [True]  # A had read batch 0 when B finished: both saw the batch done
    assert f.states() == {"web1": S.SUCCEEDED, "web2": S.SUCCEEDED, "web3": S.PENDING}
    assert f.rollout().current_batch == 1
    if approval:
        assert f.rollout().state is R.AWAITING_APPROVAL and f.actions() == ["approval_requested"]
        assert f.scheduler.queue == []
    else:
        assert [t.host for t in f.scheduler.sent].count("web3") == 1
        f.run()
        assert f.rollout().state is R.SUCCEEDED


# -- what a tick does when it cannot go on


def test_a_bug_in_a_tick_fails_the_rollout_saying_where_the_host_stood(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]])
    f.start()
    f.step()

    def broken(spec: object) -> object:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(f.runtime, "adapters", broken)
    tick = f.step()
    rollout = f.rollout()
    assert rollout.state is R.FAILED
    assert rollout.reason == "internal error on web1 in state checking: ZeroDivisionError('oops')"
    assert f"tick of {RID}/web1 crashed" in [r.getMessage() for r in caplog.records]
    assert f.scheduler.queue == []
    # Its lease was let go: nobody holds a host of a failed rollout.
    assert f.store.claim_host(RID, "web1", tick.token, "worker-b/7", LEASE) == "claimed"


@pytest.mark.parametrize("method", ["rollout", "claim_host", "host", "save_host", "claim_next_batch"])
def test_a_store_gone_mid_tick_holds_the_host_and_the_same_chain_comes_back_later(
    tmp_path: Path, method: str
) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], stabilize_successes=1)
    down = DownStore(f.store.url, clock=f.clock)
    down.down_at = method
    f.start()
    tick = f.scheduler.take()
    f.deliver(tick, store=down)
    assert f.scheduler.queue == [Tick(RID, "web1", tick.token, coordinator.OUTAGE_RETRY)]
    assert f.rollout().state is R.RUNNING
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_a_tick_superseded_midway_stops_without_failing_the_rollout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    tick = f.scheduler.take()

    def a_newer_chain_took_over(lb: FakeLoadBalancer) -> None:
        lb.on_state = None
        coordinator.enqueue(f.store, f.scheduler, RID, "web1")

    f.runtime.lb.on_state = a_newer_chain_took_over  # inside the tick, before its first save
    f.deliver(tick)
    assert f.rollout().state is R.RUNNING
    assert (
        f"tick of {RID}/web1 stops: {RID}/web1: a newer tick chain holds the host; the worker" in caplog.text
    )
    (newer,) = f.scheduler.queue
    assert newer.token == f.host("web1").token != tick.token
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_start_is_idempotent_and_the_reconciler_starts_a_rollout_whose_start_was_lost(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0, clock=f.clock) == []  # on its way
    f.clock.advance(30)
    assert recovery.reconcile(f.store, f.scheduler, quiet_for=30.0, clock=f.clock) == [
        f"{RID} {RID}: started"
    ]
    f.start()  # the lost message arrives after all
    assert f.scheduler.hosts() == ["web1"]
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_unknown_and_ended_rollouts_are_left_alone(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    coordinator.start(f.store, f.scheduler, "nope")
    coordinator.host_done(f.store, f.scheduler, "nope")
    assert recovery.restart(f.store, f.scheduler, "nope", actor="x") == []
    f.deliver(Tick("nope", "web1", "t", 0.0))
    assert f.scheduler.queue == []
    f.start()
    f.run()
    assert recovery.restart(f.store, f.scheduler, RID, actor="x") == []
    assert f.host("web1").progress == Progress.from_json(f.host("web1").progress.to_json())


def test_a_store_outage_past_its_budget_is_said_once_per_host_and_then_recorded_and_lifted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = farm(tmp_path, [["web1"]])
    down = DownStore(f.store.url, clock=f.clock)
    store = PatientStore(down, budget=1.0, sleep=f.clock.advance, clock=f.clock)
    f.start()
    down.down_at, down.times = "rollout", 10**6
    caplog.set_level(logging.DEBUG, logger="orchestrator.engine.rollout.coordinator")
    said = (
        f"{RID}: the store still does not answer, past its outage budget; web1 holds where it is, "
        "looking again every 5s"
    )
    for _ in range(2):
        f.deliver(f.scheduler.take(), store=cast(Store, store))
    levels = [r.levelno for r in caplog.records if r.getMessage() == said]
    assert levels == [logging.WARNING, logging.DEBUG]  # said once per host and outage
    assert not store.first_overrun(f"{RID}/web1")  # the tick said it under its own name
    assert [t.delay for t in f.scheduler.queue] == [5.0]
    down.times = 0  # back
    f.deliver(f.scheduler.take(), store=cast(Store, store))
    assert f.actions()[0] == "store_outage"
    f.run()
    rollout = f.rollout()
    assert rollout.state is R.SUCCEEDED and rollout.pause_cause is None


def test_a_tick_for_a_host_already_done_asks_no_adapter_and_moves_the_rollout_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], stabilize_successes=1)
    down = DownStore(f.store.url, clock=f.clock)
    down.down_at = "claim_next_batch"
    f.start()
    f.deliver(f.scheduler.take(), store=down)
    assert f.states()["web1"] is S.SUCCEEDED
    adapters = f.runtime.adapters

    def not_for_web1(spec: object) -> object:
        raise AssertionError("a host already done needs no adapter")

    monkeypatch.setattr(f.runtime, "adapters", not_for_web1)
    f.step("web1")  # the tick that came back after the outage
    assert f.scheduler.hosts() == ["web2"] and f.rollout().state is R.RUNNING
    monkeypatch.setattr(f.runtime, "adapters", adapters)
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_a_bug_in_a_tick_of_a_rollout_that_ended_meanwhile_leaves_its_ending_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()

    def ended_then_broke(spec: object) -> object:
        f.store.finish_rollout(RID, R.HALTED, "halted: by hand")
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(f.runtime, "adapters", ended_then_broke)
    f.step()
    assert f.rollout().state is R.HALTED and f.rollout().reason == "halted: by hand"


def _unanswered() -> HypervisorError:
    return HypervisorError("libvirt did not answer within 300s", domain="web1-vm", unanswered=True)


def test_a_silent_hypervisor_pauses_the_rollout_until_it_answers_then_the_host_goes_on(
    tmp_path: Path,
) -> None:
    f = farm(tmp_path, [["web1"]])
    f.runtime.snaps.errors["create"] = [_unanswered()]
    f.start()
    f.step()
    rollout = f.rollout()
    assert (rollout.state, rollout.pause_cause) == (R.PAUSED, PauseCause.HYPERVISOR)
    assert f.states()["web1"] is S.PENDING and f.lb_calls("web1") == ["drain", "maint", "ready"]
    f.runtime.snaps.errors["list"] = [_unanswered()]
    f.step()  # back in service, at the gate, which asks the hypervisor: still silent, the host holds
    assert f.rollout().state is R.PAUSED and f.lb_calls("web1") == ["drain", "maint", "ready"]
    assert f.scheduler.queue[0].delay == 10.0
    f.step()  # it answers: the host passes the gate, the pause lifts
    assert f.rollout().state is R.RUNNING and f.states()["web1"] is not S.PENDING
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_resume_restarts_a_host_in_flight_at_once_and_records_who_did(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    f.step()
    f.scheduler.take()  # its worker died with the tick
    assert recovery.restart(f.store, f.scheduler, RID, actor="alice") == ["web1: resumed in checking"]
    assert f.store.actions(RID)[-1][1:] == ("resume", "alice", "web1: resumed in checking")
    assert f.scheduler.hosts() == ["web1"]
    f.run()
    assert f.rollout().state is R.SUCCEEDED


def test_an_approval_given_in_another_process_is_carried_out_by_the_reconciler(tmp_path: Path) -> None:
    f = approval_farm(tmp_path)
    operations.approve(f.store, None, RID, "alice")  # no scheduler there: only the store changes
    assert f.scheduler.queue == [] and f.rollout().state is R.RUNNING
    assert recovery.reconcile(f.store, f.scheduler) == [f"{RID} started web2"]
    assert recovery.reconcile(f.store, f.scheduler) == []  # started once
    f.run()
    assert f.rollout().state is R.SUCCEEDED


class Rounds(threading.Event):
    """The reconciler's stop event, letting ``n`` rounds run without ever waiting."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return len(self.waits) > self.n


def test_each_reconciler_round_guards_the_load_balancer_then_resumes_what_stalled_then_runs_its_hook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    f.step()
    f.scheduler.take()  # lost
    f.runtime.lb.reload()  # and HAProxy forgot web1's maint meanwhile
    f.clock.advance(30)  # quiet for 30 s by default
    order: list[str] = []
    stop = Rounds(2)

    def lbs(config: object) -> FakeLoadBalancer:
        order.append("guard")
        return f.runtime.lb

    recovery.reconcile_forever(
        f.store, f.scheduler, stop=stop, each_round=lambda: order.append("hook"), loadbalancers=lbs
    )
    assert stop.waits == [5.0, 5.0, 5.0] and order == ["guard", "hook", "guard", "hook"]
    assert f.runtime.lb.admin["web1"] is AdminState.MAINT
    assert [(a, who) for _, a, who, _ in f.store.actions(RID)] == [
        ("lb_reasserted", "reconciler"),
        ("resume", "reconciler"),
    ]
    assert f"reconciler: {RID} web1: resumed in checking" in caplog.text
    assert f.scheduler.hosts() == ["web1"]


def test_a_failing_reconciler_round_is_said_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = farm(tmp_path, [["web1"]])
    f.start()
    failures: list[Exception] = [
        StoreUnavailable("the store does not answer"),
        ZeroDivisionError("guard bug"),
    ]
    hooks: list[Exception] = [StoreUnavailable("still no store"), ZeroDivisionError("hook bug")]

    def lbs(config: object) -> FakeLoadBalancer:
        if failures:
            raise failures.pop(0)
        return f.runtime.lb

    def hook() -> None:
        if hooks:
            raise hooks.pop(0)

    stop = Rounds(3)
    recovery.reconcile_forever(f.store, f.scheduler, every=0.5, stop=stop, each_round=hook, loadbalancers=lbs)
    assert stop.waits == [0.5] * 4 and failures == [] and hooks == []
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", "load balancer guard skipped: the store does not answer") in said
    assert ("ERROR", "load balancer guard failed") in said
    assert ("WARNING", "reconciler round skipped: still no store") in said
    assert ("ERROR", "reconciler round failed") in said


@pytest.mark.parametrize("retention", ["delete_on_success", "keep"])
def test_the_reconciler_ends_a_rollout_whose_last_host_ended_while_nobody_looked(
    tmp_path: Path, retention: str
) -> None:
    f = farm(tmp_path, [["web1"]], stabilize_successes=1, snapshot_retention=retention)
    down = DownStore(f.store.url, clock=f.clock)
    down.down_at = "finish_rollout"
    f.start()
    f.deliver(f.scheduler.take(), store=down)
    f.scheduler.take()  # the tick sent to try again is lost
    assert f.states()["web1"] is S.SUCCEEDED and f.rollout().state is R.RUNNING
    assert f.runtime.snaps.list("web1-vm") == ["orch-R1"]
    lines = recovery.reconcile(f.store, f.scheduler, runtime=f.runtime)
    assert lines == [f"{RID} moved on: succeeded, batch 1"]
    assert f.rollout().state is R.SUCCEEDED
    # The retention the last host's own tick would have applied, applied by the reconciler.
    left = [] if retention == "delete_on_success" else ["orch-R1"]
    assert f.runtime.snaps.list("web1-vm") == left
