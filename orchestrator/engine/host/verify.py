"""Whether a server may serve: checks until stable (the new version, or the old one after a revert),
back in the pool until the load balancer's own check says UP, and the revert itself."""

from __future__ import annotations

from orchestrator.adapters.checks.base import CheckResult
from orchestrator.engine.host.change import hold_for_hypervisor, reverted_memory_ends_commands, stop_leftover
from orchestrator.engine.host.decisions import Decision, Fail, Goto, Wait
from orchestrator.engine.host.run import HostRun, poll_delay
from orchestrator.model.progress import Progress
from orchestrator.model.spec import CheckSpec
from orchestrator.model.states import HostState, PauseCause

S = HostState


def _probe_all(run: HostRun, p: Progress, checks: list[CheckSpec]) -> tuple[bool, str]:
    phase = "after the revert" if checks is run.host.revert_checks else "after the update"
    details = []
    for spec in checks:
        check = run.adapters.check(spec, run.host)
        result: CheckResult = run.call(p, check.probe)
        run.store.record_event(
            run.host.name, "check.result", check=spec.label, phase=phase, ok=result.ok, seen=result.detail
        )
        if not result.ok:
            return False, f"{spec.label}: {result.detail}"
        details.append(result.detail)
    return True, "; ".join(details)


def _stabilize(run: HostRun, p: Progress, checks: list[CheckSpec], done: Goto, failed: str) -> Decision:
    ok, detail = _probe_all(run, p, checks)
    p.successes = p.successes + 1 if ok else 0
    p.detail = detail
    if p.successes >= run.spec.stabilize_successes:
        # The journal keeps what the last passing round saw, not only that it passed.
        return Goto(done.state, f"{done.detail}: {detail}", done.outcome)
    elapsed = run.elapsed(p)
    if elapsed >= run.spec.stabilize_timeout:
        return Fail(f"{failed} after {run.spec.stabilize_timeout:g}s: {detail}")
    delay = min(run.spec.stabilize_interval, max(0.0, run.spec.stabilize_timeout - elapsed))
    return Wait(delay, work=delay)


def checking(run: HostRun, p: Progress) -> Decision:
    return _stabilize(run, p, run.host.checks, Goto(S.RETURNING, "stable"), "checks did not pass")


def _wait_up(run: HostRun, p: Progress, done: Goto, what: str) -> Decision:
    server = run.host.lb_server
    if not p.entered:
        run.set_lb(p, "ready")
        p.entered = True
    state = run.call(p, lambda: run.adapters.lb.state(server))
    if state.up_after_check:
        return done
    elapsed = run.elapsed(p)
    if elapsed >= run.spec.stabilize_timeout:
        return Fail(
            f"{what}: the load balancer still reports {state.status!r} after {run.spec.stabilize_timeout:g}s"
        )
    p.detail = f"load balancer says {state.status}"
    delay = min(poll_delay(elapsed), run.spec.stabilize_timeout - elapsed)
    return Wait(delay, work=delay)


def returning(run: HostRun, p: Progress) -> Decision:
    # The snapshot stays until the rollout ends: rollback_all and `orchestrator rollback` need it.
    return _wait_up(run, p, Goto(S.SUCCEEDED, "UP"), "back in pool")


def reverting(run: HostRun, p: Progress) -> Decision:
    snapshots = run.adapters.snapshots(run.host)
    if snapshots is None:
        return Fail("no snapshot provider to revert with")
    run.set_lb(p, "maint")
    cut_off = p.running_step >= 0 and not reverted_memory_ends_commands(run)
    stopped = stop_leftover(run, p) + "; " if cut_off else ""
    p.running_step = -1
    hold_for_hypervisor(run)
    run.call(p, lambda: snapshots.revert(run.host.domain, p.snapshot))
    run.store.record_event(run.host.name, "snapshot.reverted", domain=run.host.domain, name=p.snapshot)
    # Sessions opened before the revert hang afterwards: reconnect.
    run.adapters.remotes.discard(run.host)
    p.reverted = True
    return Goto(S.VERIFYING, f"{stopped}reverted {run.host.domain} to {p.snapshot}")


def verifying(run: HostRun, p: Progress) -> Decision:
    return _stabilize(
        run,
        p,
        run.host.revert_checks,
        Goto(S.RESTORING, "old version healthy"),
        "the reverted server is still unhealthy; it stays OUT of the pool",
    )


def restoring(run: HostRun, p: Progress) -> Decision:
    if p.outcome == "hypervisor":
        decision = _wait_up(
            run, p, Goto(S.PENDING, "back in service untouched; waiting for the hypervisor"), "restore"
        )
        if isinstance(decision, Goto):
            p.held_by = PauseCause.HYPERVISOR.value  # the coordinator pauses the rollout for it
        return decision
    if p.outcome == "postpone":
        decision = _wait_up(run, p, Goto(S.PENDING, "back in service; postponed"), "restore")
        if isinstance(decision, Goto):
            run.controls.postpone(run.host)
        return decision
    if p.outcome == "skip":
        return _wait_up(run, p, Goto(S.SKIPPED, "back in service; not updated"), "restore")
    final = S.ROLLED_BACK if p.reverted else S.FAILED
    return _wait_up(run, p, Goto(final, "back in pool on the old version"), "restore")
