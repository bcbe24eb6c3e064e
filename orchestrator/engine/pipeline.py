"""One host's pipeline, as a state machine advanced one decision at a time.

    drain -> out of pool (maint) -> snapshot -> update steps -> checks until stable -> ready -> LB says UP
    failure after the snapshot: revert -> old version passes its checks -> ready -> UP -> rolled back

Each state has an entry action (idempotent: drain, maint, ready and snapshot creation may be repeated
safely) and a poll. ``advance`` runs actions back to back while they are immediate and returns as soon
as the host has to wait, with the delay; the caller (a Celery task) persists and reschedules itself, so a
drain that lasts minutes holds no worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from orchestrator.adapters.checks.base import Check, CheckResult
from orchestrator.adapters.hypervisors.base import Snapshots
from orchestrator.adapters.loadbalancers.base import LoadBalancer
from orchestrator.adapters.remote.base import Remote
from orchestrator.engine import remote_commands
from orchestrator.engine.secrets import NoSecrets, SecretValues
from orchestrator.errors import CheckError, CommandTimeout, LoadBalancerError, OrchestratorError, RemoteError
from orchestrator.model.spec import CheckSpec, HostSpec, RolloutSpec
from orchestrator.model.states import TERMINAL, HostState, PauseCause, check_transition
from orchestrator.retry import RetryPolicy

S = HostState


@dataclass
class Progress:
    """What a host has done inside its current state; persisted with the state after every decision."""

    entered: bool = False
    since: float = 0.0  # wall clock when the current state was entered
    step_index: int = 0
    successes: int = 0
    reverted: bool = False
    snapshot: str = ""  # name of the snapshot taken for this rollout, once it exists
    error: str = ""  # why the host failed, for the summary
    journal_id: int = 0
    work: float = 0.0  # seconds of the current step's own work (adapter calls and required waits)
    detail: str = ""
    running_step: int = -1  # set, durably, before an update command runs; cleared when it ended
    blocked: str = ""  # why the host cannot go on right now (load balancer unreachable)
    blocked_since: float = 0.0
    host_started: float = 0.0  # when the host left pending (its deadline counts from here)
    rollback: bool = False  # this host, already updated, is being rolled back with the whole rollout
    user_sessions: int = -1  # last count from the session probe
    last_probe: float = 0.0
    last_warn: float = 0.0
    postponed: int = 0
    outcome: str = ""  # "skip" or "postpone": how a drain that would not end was settled
    capacity_since: float = 0.0  # when the host began waiting for capacity
    held_by: str = ""  # a PauseCause value while the gate holds the host for one; "" otherwise
    held_why: str = ""  # the gate's words for it
    passed_gate: bool = False  # the gate let the host start in this tick
    next_due: float = 0.0  # when the next look was asked for: lateness beyond it is the orchestrator's own

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        return cls(**data) if data else cls()


@dataclass(frozen=True)
class Goto:
    state: HostState
    detail: str = ""
    outcome: str = "ok"


@dataclass(frozen=True)
class Wait:
    delay: float
    work: float = 0.0  # how much of the delay the step itself requires (vs. polling slack)


@dataclass(frozen=True)
class Fail:
    reason: str
    exit_code: int | None = None
    output_tail: str = ""


@dataclass(frozen=True)
class Next:
    """Same state, progress changed (e.g. one update step done): persist, then carry on at once."""

    detail: str = ""
    exit_code: int | None = None
    output_tail: str = ""
    outcome: str = "ok"


Decision = Goto | Wait | Fail | Next


@dataclass(frozen=True)
class Proceed:
    pass


@dataclass(frozen=True)
class Hold:
    reason: str  # what the host waits for: capacity, the window, a pause
    delay: float
    capacity: bool = False  # waiting for capacity is bounded by the strategy's capacity_timeout
    cause: PauseCause | None = None  # the rollout should pause for this (the window); None: just wait


@dataclass(frozen=True)
class Refuse:
    reason: str  # the host will not start (a deadline passed, capacity never came back)


GateDecision = Proceed | Hold | Refuse


class Controls(Protocol):
    """The rollout-level decisions a host needs from outside itself."""

    def gate(self, host: HostSpec, rollback: bool) -> GateDecision:
        """May this host be drained now? Proceed also claims its place (capacity) atomically."""

    def aborting(self) -> bool: ...

    def postpone(self, host: HostSpec) -> None:
        """Move the host to the end of the rollout."""


class NoControls:
    """Every host may start; nothing aborts. For unit tests and single-host tools."""

    def gate(self, host: HostSpec, rollback: bool) -> GateDecision:
        return Proceed()

    def aborting(self) -> bool:
        return False

    def postpone(self, host: HostSpec) -> None:
        pass


class RemotePool(Protocol):
    def get(self, host: HostSpec) -> Remote: ...
    def discard(self, host: HostSpec) -> None: ...


@dataclass
class Adapters:
    lb: LoadBalancer
    snapshots: Callable[[HostSpec], Snapshots | None]
    remotes: RemotePool
    check: Callable[[CheckSpec, HostSpec], Check]
    controls: Controls = field(default_factory=NoControls)
    secrets: SecretValues = field(default_factory=NoSecrets)


class Journal(Protocol):
    def save(self, host: str, state: HostState, progress: Progress) -> None: ...
    def hold(self, host: str, seconds: float) -> None:
        """Keep this host claimed for ``seconds`` more (a long command is about to run)."""

    def started(self, host: str, step: str, detail: str) -> int: ...
    def ended(
        self,
        step_id: int,
        outcome: str,
        detail: str,
        *,
        work: float,
        exit_code: int | None = None,
        output_tail: str = "",
    ) -> None: ...


# A tick this much later than asked means the orchestrator itself stalled (see _forgive_own_stall).
STALL_GRACE = 5.0

# How long a load balancer outage may last before the hosts waiting on it fail.
LB_OUTAGE_TIMEOUT = 600.0


def poll_delay(elapsed: float) -> float:
    """Poll fast at first (most drains end within a request's time), then back off to 1 s."""
    return min(1.0, max(0.02, elapsed / 10))


# The forward path: where an abort or the host deadline may interrupt.
FORWARD = frozenset({S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.UPDATING, S.CHECKING, S.RETURNING})

# The journal step name each state records, and what its failure leads to.
STEP_NAMES = {
    S.DRAINING: "drain",
    S.OUT_OF_POOL: "maint",
    S.SNAPSHOTTING: "snapshot",
    S.UPDATING: "update",
    S.CHECKING: "checks",
    S.RETURNING: "return",
    S.REVERTING: "revert",
    S.VERIFYING: "verify_old",
    S.RESTORING: "restore",
}


class HostPipeline:
    def __init__(
        self,
        spec: RolloutSpec,
        host: HostSpec,
        adapters: Adapters,
        journal: Journal,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.host = host
        self.adapters = adapters
        self.journal = journal
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._handlers: dict[HostState, Callable[[Progress], Decision]] = {
            S.PENDING: self._pending,
            S.SUCCEEDED: self._pending,  # only reached when rolling back
            S.DRAINING: self._draining,
            S.OUT_OF_POOL: self._out_of_pool,
            S.SNAPSHOTTING: self._snapshotting,
            S.UPDATING: self._updating,
            S.CHECKING: self._checking,
            S.RETURNING: self._returning,
            S.REVERTING: self._reverting,
            S.VERIFYING: self._verifying,
            S.RESTORING: self._restoring,
        }

    # the loop
    def _forgive_own_stall(self, p: Progress) -> None:
        """If this tick comes much later than asked (a worker died, the broker restarted), that time was
        the orchestrator's, not the host's: it does not count against the step's timeout (a healthy host
        must not be rolled back because nobody probed it). The host's own deadline still counts it."""
        late = self.clock() - p.next_due if p.next_due else 0.0
        if late > STALL_GRACE:
            p.since += late
            p.capacity_since += late if p.capacity_since else 0.0
        p.next_due = 0.0

    def _done(self, state: HostState, progress: Progress) -> bool:
        if state is S.SUCCEEDED and progress.rollback:
            return False
        return state in TERMINAL or (state is S.PENDING and progress.outcome == "postpone")

    def advance(self, state: HostState, progress: Progress) -> tuple[HostState, Progress, float | None]:
        """Act until the host must wait (returns the delay) or is done (returns None). A host postponed
        to the end of the rollout is done for now: its batch will start it again."""
        self._forgive_own_stall(progress)
        while not self._done(state, progress):
            try:
                decision = self._interruption(state, progress) or self._handlers[state](progress)
                progress.blocked = ""
            except LoadBalancerError as exc:
                decision = self._lb_outage(progress, exc)
            except OrchestratorError as exc:
                decision = Fail(str(exc))
            if isinstance(decision, Wait):
                progress.work += decision.work
                progress.next_due = self.clock() + decision.delay
                self.journal.save(self.host.name, state, progress)
                return state, progress, decision.delay
            if isinstance(decision, Next):
                self._end_step(
                    progress, decision.outcome, decision.detail, decision.exit_code, decision.output_tail
                )
                self._open_step(state, progress)
                self.journal.save(self.host.name, state, progress)
                continue
            if isinstance(decision, Fail):
                progress.error = decision.reason
                self._end_step(progress, "failed", decision.reason, decision.exit_code, decision.output_tail)
                state = self._move(state, self._failure_target(state, progress), progress)
            else:
                self._end_step(progress, decision.outcome, decision.detail)
                state = self._move(state, decision.state, progress)
        return state, progress, None

    def _lb_outage(self, progress: Progress, exc: LoadBalancerError) -> Decision:
        """An unreachable load balancer pauses the host where it stands (retrying), rather than
        sending it down the failure path, which needs the load balancer too."""
        if not exc.transient:
            return Fail(str(exc))
        now = self.clock()
        if not progress.blocked:
            progress.blocked_since = now
        progress.blocked = f"load balancer unreachable: {exc}"
        if now - progress.blocked_since >= LB_OUTAGE_TIMEOUT:
            return Fail(f"{progress.blocked} (for {LB_OUTAGE_TIMEOUT:g}s)")
        return Wait(min(5.0, max(0.5, (now - progress.blocked_since) / 4)))

    def _move(self, state: HostState, new: HostState, progress: Progress) -> HostState:
        check_transition(state, new)
        progress.entered = False
        progress.since = self.clock()
        progress.successes = 0
        progress.work = 0.0
        progress.detail = ""
        if new is S.UPDATING:
            progress.step_index = 0
        self._open_step(new, progress)
        self.journal.save(self.host.name, new, progress)
        return new

    def _open_step(self, state: HostState, progress: Progress) -> None:
        progress.journal_id = 0
        # PENDING: a host postponed to the end of the rollout is waiting, not doing a step.
        if state in TERMINAL or state is S.PENDING:
            return
        if state is S.UPDATING and progress.step_index >= len(self.host.steps):
            return
        name = STEP_NAMES[state]
        detail = ""
        if state is S.UPDATING and progress.step_index < len(self.host.steps):
            name = f"update[{progress.step_index}]"
            detail = self.host.steps[progress.step_index].label
        progress.journal_id = self.journal.started(self.host.name, name, detail)
        progress.work = 0.0

    def _end_step(
        self,
        progress: Progress,
        outcome: str,
        detail: str,
        exit_code: int | None = None,
        output_tail: str = "",
    ) -> None:
        if progress.journal_id:
            self.journal.ended(
                progress.journal_id,
                outcome,
                detail or progress.detail,
                work=progress.work,
                exit_code=exit_code,
                output_tail=output_tail,
            )
            progress.journal_id = 0

    def _interruption(self, state: HostState, p: Progress) -> Decision | None:
        """An abort, or the host's deadline, stops the forward path where it is still safe to."""
        if p.rollback or state in (S.PENDING, S.SUCCEEDED) or state not in FORWARD:
            return None
        if state in (S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING) and self.adapters.controls.aborting():
            return Fail("aborted by an operator before the update began; put back as it was")
        deadline = self.spec.deadlines.host
        if deadline and p.host_started and self.clock() - p.host_started > deadline:
            return Fail(f"the host deadline ({deadline:g}s) passed in {STEP_NAMES[state]}")
        return None

    def _failure_target(self, state: HostState, progress: Progress) -> HostState:
        if state is S.PENDING:
            return S.FAILED  # refused at the gate: nothing was touched
        if state in (S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING):
            return S.RESTORING  # nothing on the server changed yet: put it back as it was
        if state in (S.UPDATING, S.CHECKING, S.RETURNING):
            return S.REVERTING if progress.snapshot else S.FAILED_OUT
        return S.FAILED_OUT  # the failure path itself failed: leave it out and say so

    def _call(self, progress: Progress, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return self.retry.call(fn)
        finally:
            progress.work += time.monotonic() - started

    def _elapsed(self, progress: Progress) -> float:
        return self.clock() - progress.since

    # states
    def _pending(self, p: Progress) -> Decision:
        # A secret this worker cannot read fails the host here, before anything is touched.
        self.adapters.secrets.require()
        decision = self.adapters.controls.gate(self.host, p.rollback)
        p.held_by = decision.cause.value if isinstance(decision, Hold) and decision.cause else ""
        p.held_why = decision.reason if isinstance(decision, Hold) else ""
        p.passed_gate = isinstance(decision, Proceed)
        if isinstance(decision, Hold):
            p.detail = f"waiting for {decision.reason}"
            if not decision.capacity:
                p.capacity_since = 0.0
                return Wait(decision.delay)
            p.capacity_since = p.capacity_since or self.clock()
            waited = self.clock() - p.capacity_since
            if waited > self.spec.capacity_timeout and not p.rollback:
                return Fail(f"no capacity for {self.spec.capacity_timeout:g}s: {decision.reason}")
            return Wait(decision.delay)
        if isinstance(decision, Refuse):
            return Fail(decision.reason)
        p.host_started = self.clock()
        p.outcome = ""
        return Goto(S.DRAINING, "rolling back" if p.rollback else "")

    def _draining(self, p: Progress) -> Decision:
        server = self.host.lb_server
        if not p.entered:
            self._call(p, lambda: self.adapters.lb.drain(server))
            p.entered = True
        state = self._call(p, lambda: self.adapters.lb.state(server))
        elapsed = self._elapsed(p)
        sessions = self.spec.sessions
        if state.sessions == 0 and (sessions is None or not self.host.session_probe):
            return Goto(S.OUT_OF_POOL, "no connections left")
        if state.sessions == 0 and sessions is not None:
            users = self._user_sessions(p, sessions.interval)
            if users == 0:
                return Goto(S.OUT_OF_POOL, "no connections, no user sessions left")
            self._warn_users(p, sessions.warn_every)
            p.detail = f"{users} user sessions left"
        else:
            p.detail = f"{state.sessions} connections left"
        if elapsed >= self.spec.drain_timeout:
            return self._drain_timed_out(p, state.sessions)
        interval = sessions.interval if state.sessions == 0 and sessions is not None else poll_delay(elapsed)
        delay = min(interval, self.spec.drain_timeout - elapsed)
        return Wait(delay, work=delay)

    def _user_sessions(self, p: Progress, interval: float) -> int:
        """Run the session probe at most once per interval; its output is the number of user sessions."""
        now = self.clock()
        if p.user_sessions >= 0 and now - p.last_probe < interval:
            return p.user_sessions
        remote = self._call(p, lambda: self.adapters.remotes.get(self.host))
        result = remote.run(self.adapters.secrets.shell(self.host.session_probe), timeout=30)
        p.work += result.duration
        text = result.stdout.strip()
        if not result.ok or not text.isdigit():
            raise CheckError(
                f"session probe on {self.host.name} exited {result.exit_code} printing "
                f"{text[-80:]!r}; it must print the number of active user sessions"
            )
        p.user_sessions = int(text)
        p.last_probe = now
        return p.user_sessions

    def _warn_users(self, p: Progress, every: float) -> None:
        if not self.host.session_warn or (p.last_warn and self.clock() - p.last_warn < every):
            return
        remote = self.adapters.remotes.get(self.host)
        result = remote.run(self.adapters.secrets.shell(self.host.session_warn), timeout=30)
        p.work += result.duration
        p.last_warn = self.clock()

    def _drain_timed_out(self, p: Progress, connections: int) -> Decision:
        timeout = self.spec.drain_timeout
        if connections > 0:
            if self.spec.drain_on_timeout == "force":
                return Goto(S.OUT_OF_POOL, f"drain timeout: forcing with {connections} connections left")
            return Fail(
                f"{connections} connections still open after the drain timeout ({timeout:g}s); "
                "server left in service, nothing changed"
            )
        assert self.spec.sessions is not None
        policy = self.spec.sessions.on_timeout
        users = p.user_sessions
        if policy == "force":
            return Goto(S.OUT_OF_POOL, f"drain timeout: forcing with {users} user sessions left")
        if policy == "postpone" and p.postponed == 0:
            p.postponed += 1
            p.outcome = "postpone"
            return Goto(
                S.RESTORING,
                f"{users} user sessions after {timeout:g}s: postponed to the end",
                outcome="postponed",
            )
        p.outcome = "skip"
        return Goto(
            S.RESTORING,
            f"{users} user sessions after {timeout:g}s: skipped, left as it was",
            outcome="skipped",
        )

    def _out_of_pool(self, p: Progress) -> Decision:
        self._call(p, lambda: self.adapters.lb.maint(self.host.lb_server))
        if p.rollback:
            return Goto(S.REVERTING, "maint; rolling back")
        nxt = S.SNAPSHOTTING if self.spec.snapshot_enabled else S.UPDATING
        return Goto(nxt, "maint")

    def _snapshotting(self, p: Progress) -> Decision:
        snapshots = self.adapters.snapshots(self.host)
        if snapshots is None:
            return Goto(S.UPDATING, "no snapshot provider")
        name = self.host.snapshot_name
        self._call(p, lambda: snapshots.create(self.host.domain, name, memory=self.spec.snapshot_memory))
        p.snapshot = name
        return Goto(S.UPDATING, f"snapshot {name} of {self.host.domain}")

    def _updating(self, p: Progress) -> Decision:
        if p.step_index >= len(self.host.steps):
            return Goto(S.CHECKING, f"{len(self.host.steps)} steps done")
        if p.running_step >= 0:
            return self._interrupted(p)
        step = self.host.steps[p.step_index]
        remote = self._call(p, lambda: self.adapters.remotes.get(self.host))
        if step.kind == "upload":
            assert step.src is not None
            src = step.src
            self._call(p, lambda: remote.upload(src, step.dest, mode=step.mode))
            p.step_index += 1
            return Next(step.label)
        # Written down before the command starts: a worker that dies inside it leaves the marker, and
        # whoever resumes knows the command may have half-run.
        p.running_step = p.step_index
        self.journal.save(self.host.name, S.UPDATING, p)
        self.journal.hold(self.host.name, step.timeout + 60)
        pidfile = remote_commands.pid_file(self.spec.rollout_id, self.host.name, p.step_index)
        try:
            command = remote_commands.wrap(self.adapters.secrets.shell(step.command), pidfile)
            result = remote.run(command, timeout=step.timeout)
        except CommandTimeout as exc:
            self.adapters.remotes.discard(self.host)
            return Fail(str(exc))
        p.running_step = -1
        p.work += result.duration
        if not result.ok:
            return Fail(
                f"{step.label!r} exited {result.exit_code}: {result.tail(1)}",
                result.exit_code,
                result.tail(20),
            )
        p.step_index += 1
        return Next(f"exit 0 in {result.duration:.2f}s", result.exit_code, result.tail(5))

    def _interrupted(self, p: Progress) -> Decision:
        """A command was cut off midway (its worker died). Never run it again on top of itself: go back
        to the snapshot and apply the whole update again from its first step."""
        step = p.running_step
        snapshots = self.adapters.snapshots(self.host)
        if not p.snapshot or snapshots is None:
            return Fail(
                f"update[{step}] was interrupted and there is no snapshot to return to; the server's "
                "state is unknown"
            )
        stopped = self._stop_leftover(p)
        self._call(p, lambda: snapshots.revert(self.host.domain, p.snapshot))
        self.adapters.remotes.discard(self.host)
        p.running_step = -1
        p.step_index = 0
        return Next(
            f"interrupted (worker lost); {stopped}; reverted to {p.snapshot}, applying the update again",
            outcome="interrupted",
        )

    def _probe_all(self, p: Progress, checks: list[CheckSpec]) -> tuple[bool, str]:
        details = []
        for spec in checks:
            check = self.adapters.check(spec, self.host)
            result: CheckResult = self._call(p, check.probe)
            if not result.ok:
                return False, f"{spec.label}: {result.detail}"
            details.append(result.detail)
        return True, "; ".join(details)

    def _stabilize(self, p: Progress, checks: list[CheckSpec], done: Decision, failed: str) -> Decision:
        ok, detail = self._probe_all(p, checks)
        p.successes = p.successes + 1 if ok else 0
        p.detail = detail
        if p.successes >= self.spec.stabilize_successes:
            # The journal keeps what the last passing round saw, not only that it passed.
            return (
                Goto(done.state, f"{done.detail}: {detail}", done.outcome) if isinstance(done, Goto) else done
            )
        elapsed = self._elapsed(p)
        if elapsed >= self.spec.stabilize_timeout:
            return Fail(f"{failed} after {self.spec.stabilize_timeout:g}s: {detail}")
        delay = min(self.spec.stabilize_interval, max(0.0, self.spec.stabilize_timeout - elapsed))
        return Wait(delay, work=delay)

    def _checking(self, p: Progress) -> Decision:
        return self._stabilize(p, self.host.checks, Goto(S.RETURNING, "stable"), "checks did not pass")

    def _wait_up(self, p: Progress, done: Goto, what: str) -> Decision:
        server = self.host.lb_server
        if not p.entered:
            self._call(p, lambda: self.adapters.lb.ready(server))
            p.entered = True
        state = self._call(p, lambda: self.adapters.lb.state(server))
        if state.up_after_check:
            return done
        elapsed = self._elapsed(p)
        if elapsed >= self.spec.stabilize_timeout:
            return Fail(
                f"{what}: the load balancer still reports {state.status!r} after "
                f"{self.spec.stabilize_timeout:g}s"
            )
        p.detail = f"load balancer says {state.status}"
        delay = min(poll_delay(elapsed), self.spec.stabilize_timeout - elapsed)
        return Wait(delay, work=delay)

    def _returning(self, p: Progress) -> Decision:
        # The snapshot stays until the rollout ends: rollback_all and `orchestrator rollback` need it.
        return self._wait_up(p, Goto(S.SUCCEEDED, "UP"), "back in pool")

    def _reverting(self, p: Progress) -> Decision:
        snapshots = self.adapters.snapshots(self.host)
        if snapshots is None:
            return Fail("no snapshot provider to revert with")
        self._call(p, lambda: self.adapters.lb.maint(self.host.lb_server))
        stopped = self._stop_leftover(p) + "; " if p.running_step >= 0 else ""
        p.running_step = -1
        self._call(p, lambda: snapshots.revert(self.host.domain, p.snapshot))
        # Sessions opened before the revert hang afterwards: reconnect.
        self.adapters.remotes.discard(self.host)
        p.reverted = True
        return Goto(S.VERIFYING, f"{stopped}reverted {self.host.domain} to {p.snapshot}")

    def _stop_leftover(self, p: Progress) -> str:
        """A command cut off midway may still run on the host: stop it before the revert, or it would
        finish on top of it. Over a fresh connection (the old one is dead or hung)."""
        self.adapters.remotes.discard(self.host)
        pidfile = remote_commands.pid_file(self.spec.rollout_id, self.host.name, p.running_step)
        remote = self._call(p, lambda: self.adapters.remotes.get(self.host))
        result = remote.run(remote_commands.stop_leftover(pidfile), timeout=60)
        if not result.ok:
            raise RemoteError(
                f"could not stop the cut-off update[{p.running_step}] on {self.host.name} "
                f"(exit {result.exit_code}: {result.tail(1)}); not reverting under it",
                host=self.host.name,
            )
        return result.stdout.strip() or "no leftover command"

    def _verifying(self, p: Progress) -> Decision:
        return self._stabilize(
            p,
            self.host.revert_checks,
            Goto(S.RESTORING, "old version healthy"),
            "the reverted server is still unhealthy; it stays OUT of the pool",
        )

    def _restoring(self, p: Progress) -> Decision:
        if p.outcome == "postpone":
            decision = self._wait_up(p, Goto(S.PENDING, "back in service; postponed"), "restore")
            if isinstance(decision, Goto):
                self.adapters.controls.postpone(self.host)
            return decision
        if p.outcome == "skip":
            return self._wait_up(p, Goto(S.SKIPPED, "back in service; not updated"), "restore")
        final = S.ROLLED_BACK if p.reverted else S.FAILED
        return self._wait_up(p, Goto(final, "back in pool on the old version"), "restore")
