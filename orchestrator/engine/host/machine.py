"""One host's pipeline, as a state machine advanced one decision at a time.

    drain -> out of pool (maint) -> snapshot -> update steps -> checks until stable -> ready -> LB says UP
    failure after the snapshot: revert -> old version passes its checks -> ready -> UP -> rolled back

Each state has a handler (drain.py, change.py, verify.py) whose entry action is idempotent (drain,
maint, ready and snapshot creation may be repeated safely). ``advance`` runs handlers back to back
while they are immediate and returns as soon as the host has to wait, with the delay; the caller (a
Celery task) persists and reschedules itself, so a drain that lasts minutes holds no worker. This module
owns the loop: interruptions (abort, the host deadline), the failure path, the journal's steps, and an
unreachable load balancer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from orchestrator.engine.host import change, drain, lbstate, verify
from orchestrator.engine.host.decisions import Decision, Fail, Next, Wait
from orchestrator.engine.host.ports import Adapters, Controls, HostStore, NoControls
from orchestrator.engine.host.run import HostRun
from orchestrator.errors import HypervisorError, LoadBalancerError, OrchestratorError, RemoteError
from orchestrator.model.progress import Progress
from orchestrator.model.spec import HostSpec, RolloutSpec
from orchestrator.model.states import TERMINAL, HostState, PauseCause, check_transition
from orchestrator.retry import RetryPolicy

S = HostState
log = logging.getLogger(__name__)

# A tick this much later than asked means the orchestrator itself stalled (see _forgive_own_stall).
STALL_GRACE = 5.0
# How long a load balancer (or hypervisor) outage may last before the hosts waiting on it fail.
OUTAGE_TIMEOUT = 600.0
LB_OUTAGE_TIMEOUT = OUTAGE_TIMEOUT

# The forward path: where an abort or the host deadline may interrupt.
FORWARD = frozenset({S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.UPDATING, S.CHECKING, S.RETURNING})

# The journal step name each state records.
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

Handler = Callable[[HostRun, Progress], Decision]
HANDLERS: dict[HostState, Handler] = {
    S.PENDING: drain.pending,
    S.SUCCEEDED: drain.pending,  # only reached when rolling back
    S.DRAINING: drain.draining,
    S.OUT_OF_POOL: change.out_of_pool,
    S.SNAPSHOTTING: change.snapshotting,
    S.UPDATING: change.updating,
    S.CHECKING: verify.checking,
    S.RETURNING: verify.returning,
    S.REVERTING: verify.reverting,
    S.VERIFYING: verify.verifying,
    S.RESTORING: verify.restoring,
}


def failure(exc: OrchestratorError) -> Fail:
    """An error as the journal keeps it: its message, and the command's exit code and output if one ran."""
    result = exc.result if isinstance(exc, RemoteError) else None
    if result is None:
        return Fail(str(exc))
    return Fail(
        str(exc),
        result.exit_code if result.exit_code >= 0 else None,
        result.tail(20),
        output_sha256=result.digest,
    )


class HostPipeline:
    def __init__(
        self,
        spec: RolloutSpec,
        host: HostSpec,
        adapters: Adapters,
        store: HostStore,
        *,
        controls: Controls | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rollout_created: float = 0.0,
    ) -> None:
        self.run = HostRun(
            spec,
            host,
            adapters,
            store,
            controls or NoControls(),
            retry or RetryPolicy(),
            clock,
            rollout_created,
        )
        self.host = host
        self.store = store
        self.clock = clock

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
                decision = self._interruption(state, progress)
                if decision is None:
                    self._hold_in_place(state, progress)
                    decision = HANDLERS[state](self.run, progress)
                progress.blocked = progress.blocked_by = ""
            except LoadBalancerError as exc:
                decision = (
                    self._outage(progress, PauseCause.LOADBALANCER, exc) if exc.transient else Fail(str(exc))
                )
            except HypervisorError as exc:
                # After the snapshot, only the hypervisor can put the server back: wait for it.
                waits = exc.unanswered and state in (S.UPDATING, S.REVERTING)
                decision = self._outage(progress, PauseCause.HYPERVISOR, exc) if waits else failure(exc)
            except OrchestratorError as exc:
                decision = failure(exc)
            if isinstance(decision, Wait):
                progress.work += decision.work
                progress.next_due = self.clock() + decision.delay
                self.store.save(self.host.name, state, progress)
                return state, progress, decision.delay
            if isinstance(decision, Next):
                self._end_step(
                    progress,
                    decision.outcome,
                    decision.detail,
                    decision.exit_code,
                    decision.output_tail,
                    decision.output_sha256,
                )
                self._open_step(state, progress)
                self.store.save(self.host.name, state, progress)
                continue
            if isinstance(decision, Fail):
                progress.error = decision.reason
                self._end_step(
                    progress,
                    "failed",
                    decision.reason,
                    decision.exit_code,
                    decision.output_tail,
                    decision.output_sha256,
                )
                state = self._move(state, self._failure_target(state, progress), progress)
            else:
                self._end_step(progress, decision.outcome, decision.detail)
                state = self._move(state, decision.state, progress)
        return state, progress, None

    def _hold_in_place(self, state: HostState, p: Progress) -> None:
        """Confirm the load balancer still holds the server where this state needs it, and set it
        again at once if not (a reload without saved server states forgets runtime admin states).
        Out of pool and reverting are left to their handlers: setting maint is the first thing they do."""
        want = lbstate.expected(state, p)
        if want is None or state in (S.OUT_OF_POOL, S.REVERTING):
            return
        lb, server = self.run.adapters.lb, self.host.lb_server
        seen = self.run.call(p, lambda: lb.state(server))
        if not lbstate.drifted(seen, want):
            return
        self.run.call(p, lambda: lbstate.put(lb, server, want))
        what = lbstate.what_was_seen(seen, state, want)
        log.warning("%s/%s: %s", self.run.spec.rollout_id, self.host.name, what)
        self.store.record_action(self.host.name, "lb_reasserted", what)

    def _outage(self, progress: Progress, cause: PauseCause, exc: OrchestratorError) -> Decision:
        """An unreachable load balancer (or, after the snapshot, hypervisor) holds the host where it
        stands, retrying, rather than sending it down the failure path, which needs them too; the
        coordinator pauses the rollout for it. Past OUTAGE_TIMEOUT the host fails, saying what to do."""
        now = self.clock()
        if progress.blocked_by != cause.value:
            progress.blocked_since = now
        what = "load balancer" if cause is PauseCause.LOADBALANCER else "hypervisor"
        progress.blocked = f"{what} unreachable: {exc}"
        progress.blocked_by = cause.value
        if now - progress.blocked_since >= OUTAGE_TIMEOUT:
            if cause is PauseCause.HYPERVISOR:
                return Fail(
                    f"the hypervisor did not answer for {OUTAGE_TIMEOUT:g}s ({exc}); {self.host.domain} is "
                    f"OUT of the pool: revert it to snapshot {progress.snapshot} by hand, check it, then "
                    "return it to the pool"
                )
            return Fail(f"{progress.blocked} (for {OUTAGE_TIMEOUT:g}s)")
        silent = now - progress.blocked_since
        # A quarter of the silence so far, between 0.5 and 5 s, and never past the outage budget.
        return Wait(min(5.0, max(0.5, silent / 4), OUTAGE_TIMEOUT - silent))

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
        self.store.save(self.host.name, new, progress)
        return new

    def _open_step(self, state: HostState, progress: Progress) -> None:
        progress.journal_id = 0
        # PENDING: a host postponed to the end of the rollout is waiting, not doing a step.
        if state in TERMINAL or state is S.PENDING:
            return
        if state is S.UPDATING and progress.step_index >= len(self.host.steps):
            return
        name = STEP_NAMES[state]
        detail = command = ""
        if state is S.UPDATING and progress.step_index < len(self.host.steps):
            name = f"update[{progress.step_index}]"
            step = self.host.steps[progress.step_index]
            detail = step.label
            command = step.command or step.label  # an upload's label says what it copies where
        progress.journal_id = self.store.step_started(self.host.name, name, detail, command=command)
        progress.work = 0.0

    def _end_step(
        self,
        progress: Progress,
        outcome: str,
        detail: str,
        exit_code: int | None = None,
        output_tail: str = "",
        output_sha256: str = "",
    ) -> None:
        if progress.journal_id:
            self.store.step_ended(
                progress.journal_id,
                outcome,
                detail or progress.detail,
                work=progress.work,
                exit_code=exit_code,
                output_tail=output_tail,
                output_sha256=output_sha256,
            )
            progress.journal_id = 0

    def _interruption(self, state: HostState, p: Progress) -> Decision | None:
        """An abort, or the host's deadline, stops the forward path where it is still safe to."""
        if p.rollback or state in (S.PENDING, S.SUCCEEDED) or state not in FORWARD:
            return None
        if state in (S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING) and self.run.controls.aborting():
            return Fail("aborted by an operator before the update began; put back as it was")
        deadline = self.run.spec.deadlines.host
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
