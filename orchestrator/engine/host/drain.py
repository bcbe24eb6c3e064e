"""Before the server leaves the pool: the gate (may it start now?), then drain until no connection and
no user session is left, warning the users meanwhile; what a drain that would not end turns into."""

from __future__ import annotations

from orchestrator.engine.host.decisions import Decision, Fail, Goto, Hold, Proceed, Refuse, Wait
from orchestrator.engine.host.run import HostRun, poll_delay
from orchestrator.errors import CheckError
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState

S = HostState


def pending(run: HostRun, p: Progress) -> Decision:
    # A secret this worker cannot read fails the host here, before anything is touched.
    run.adapters.secrets.require()
    if p.outcome == "hypervisor":
        # Back in service because the hypervisor did not answer: end this tick, so the coordinator
        # pauses the rollout for it; from then on the gate waits for the hypervisor.
        p.outcome = ""
        return Wait(1.0)
    decision = run.controls.gate(run.host, p.rollback)
    p.held_by = decision.cause.value if isinstance(decision, Hold) and decision.cause else ""
    p.held_why = decision.reason if isinstance(decision, Hold) else ""
    p.passed_gate = isinstance(decision, Proceed)
    if isinstance(decision, Hold):
        p.detail = f"waiting for {decision.reason}"
        if not decision.capacity:
            p.capacity_since = 0.0
            return Wait(decision.delay)
        p.capacity_since = p.capacity_since or run.clock()
        waited = run.clock() - p.capacity_since
        if waited > run.spec.capacity_timeout and not p.rollback:
            return Fail(f"no capacity for {run.spec.capacity_timeout:g}s: {decision.reason}")
        return Wait(decision.delay)
    if isinstance(decision, Refuse):
        return Fail(decision.reason)
    p.host_started = run.clock()
    p.outcome = ""
    return Goto(S.DRAINING, "rolling back" if p.rollback else "")


def draining(run: HostRun, p: Progress) -> Decision:
    server = run.host.lb_server
    if not p.entered:
        run.set_lb(p, "drain")
        p.entered = True
        # Read after the drain: the process that answers took it, or started later still. One that
        # started before the rollout was created is taken as started fresh (nothing to wait for).
        now, seen = run.clock(), run.call(p, lambda: run.adapters.lb.instance())
        # Uptime is whole seconds, rounded down: a process started after the rollout always passes.
        reloaded = seen.uptime < now - run.rollout_created
        p.older_lb_until = now + seen.older_gone_in if seen.older_gone_in and reloaded else 0.0
    state = run.call(p, lambda: run.adapters.lb.state(server))
    elapsed = run.elapsed(p)
    sessions = run.spec.sessions
    if state.sessions == 0 and (sessions is None or not run.host.session_probe):
        return _older_processes(run, p, elapsed) or Goto(S.OUT_OF_POOL, "no connections left")
    if state.sessions == 0 and sessions is not None:
        users = _user_sessions(run, p, sessions.interval)
        if users == 0:
            return _older_processes(run, p, elapsed) or Goto(
                S.OUT_OF_POOL, "no connections, no user sessions left"
            )
        _warn_users(run, p, sessions.warn_every)
        p.detail = f"{users} user sessions left"
    else:
        p.detail = f"{state.sessions} connections left"
    if elapsed >= run.spec.drain_timeout:
        return _timed_out(run, p, state.sessions)
    interval = sessions.interval if state.sessions == 0 and sessions is not None else poll_delay(elapsed)
    delay = min(interval, run.spec.drain_timeout - elapsed)
    return Wait(delay, work=delay)


def _older_processes(run: HostRun, p: Progress, elapsed: float) -> Decision | None:
    """None once no HAProxy process older than the drain can be left. An HAProxy reloaded shortly
    before the drain leaves its old process serving the connections it kept, routing their requests
    with the server states it had (this server in service), out of reach of the runtime API and of the
    drain's count; `hard-stop-after` bounds how long it may live (Instance.older_gone_in)."""
    left = p.older_lb_until - run.clock()
    if left <= 0:
        return None
    server, timeout = run.host.lb_server, run.spec.drain_timeout
    if elapsed >= timeout:
        why = f"an HAProxy process older than the drain may route to {server} for {left:.1f}s more"
        if run.spec.drain_on_timeout == "force":
            return Goto(S.OUT_OF_POOL, f"drain timeout: forcing while {why}")
        return Fail(f"{why} after the drain timeout ({timeout:g}s); server left in service, nothing changed")
    p.detail = f"no connections left; waiting {left:.1f}s for older HAProxy processes to stop"
    delay = min(poll_delay(elapsed), left, timeout - elapsed)
    return Wait(delay, work=delay)


def _user_sessions(run: HostRun, p: Progress, interval: float) -> int:
    """Run the session probe at most once per interval; its output is the number of user sessions."""
    now = run.clock()
    if p.user_sessions >= 0 and now - p.last_probe < interval:
        return p.user_sessions
    remote = run.call(p, lambda: run.adapters.remotes.get(run.host))
    result = remote.run(run.adapters.secrets.shell(run.host.session_probe), timeout=30)
    p.work += result.duration
    text = result.stdout.strip()
    if not result.ok or not text.isdigit():
        raise CheckError(
            f"session probe on {run.host.name} exited {result.exit_code} printing "
            f"{text[-80:]!r}; it must print the number of active user sessions"
        )
    p.user_sessions = int(text)
    p.last_probe = now
    return p.user_sessions


def _warn_users(run: HostRun, p: Progress, every: float) -> None:
    if not run.host.session_warn or (p.last_warn and run.clock() - p.last_warn < every):
        return
    remote = run.adapters.remotes.get(run.host)
    result = remote.run(run.adapters.secrets.shell(run.host.session_warn), timeout=30)
    p.work += result.duration
    p.last_warn = run.clock()


def _timed_out(run: HostRun, p: Progress, connections: int) -> Decision:
    timeout = run.spec.drain_timeout
    if connections > 0:
        if run.spec.drain_on_timeout == "force":
            return Goto(S.OUT_OF_POOL, f"drain timeout: forcing with {connections} connections left")
        return Fail(
            f"{connections} connections still open after the drain timeout ({timeout:g}s); "
            "server left in service, nothing changed"
        )
    assert run.spec.sessions is not None
    policy = run.spec.sessions.on_timeout
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
