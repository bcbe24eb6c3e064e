"""Where the server changes: out of the pool (maint), the snapshot, the update steps, and what to do
when an update command was cut off midway.

Update commands that can be found and stopped after their worker is gone: closing an SSH connection
does not stop a command run without a terminal, so a command cut off by a dead worker or a dropped
connection goes on running on the host, and would finish on top of the revert that follows. Each update
command runs under a small shell that writes its process group id to a pid file named after the
rollout, host and step, and removes it when the command ends. Before reverting a host whose command was
cut off, the leftover group is stopped, but only if its command line still carries that pid file's
name: a process id reused by something else is never touched.
"""

from __future__ import annotations

import shlex

from orchestrator.engine.host.decisions import Decision, Fail, Goto, Next
from orchestrator.engine.host.run import HostRun
from orchestrator.errors import CommandFailed, CommandTimeout, HypervisorError, RemoteError
from orchestrator.model.inventory import LibvirtConfig
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState

S = HostState


def out_of_pool(run: HostRun, p: Progress) -> Decision:
    run.call(p, lambda: run.adapters.lb.maint(run.host.lb_server))
    if p.rollback:
        return Goto(S.REVERTING, "maint; rolling back")
    return Goto(S.SNAPSHOTTING if run.spec.snapshot_enabled else S.UPDATING, "maint")


def snapshotting(run: HostRun, p: Progress) -> Decision:
    snapshots = run.adapters.snapshots(run.host)
    if snapshots is None:
        return Goto(S.UPDATING, "no snapshot provider")
    name = run.host.snapshot_name
    hold_for_hypervisor(run)
    try:
        run.call(p, lambda: snapshots.create(run.host.domain, name, memory=run.spec.snapshot_memory))
    except HypervisorError as exc:
        if not (exc.unanswered or exc.transient):
            raise  # it answered, and refused: a failure like any other
        # Nothing changed on the server yet: put it back untouched and wait for the hypervisor (the
        # coordinator pauses the rollout for it).
        p.outcome = "hypervisor"
        p.held_why = f"the hypervisor does not answer: {exc}"
        return Goto(S.RESTORING, f"{p.held_why}; back in service untouched", outcome="held")
    p.snapshot = name
    return Goto(S.UPDATING, f"snapshot {name} of {run.host.domain}")


def hold_for_hypervisor(run: HostRun) -> None:
    """A snapshot call may take up to the hypervisor's bound: keep the host claimed that long, or the
    reconciler would take the host for stalled and start a second tick on it."""
    run.store.hold(run.host.name, run.spec.snapshot_timeout + 60)


def reverted_memory_ends_commands(run: HostRun) -> bool:
    """A libvirt memory-and-disk revert replaces every process of the guest: a command cut off midway
    dies with the memory, so nothing needs stopping over SSH first (the guest may not even answer)."""
    return isinstance(run.spec.hypervisor, LibvirtConfig) and run.spec.snapshot_memory


def updating(run: HostRun, p: Progress) -> Decision:
    if p.step_index >= len(run.host.steps):
        return Goto(S.CHECKING, f"{len(run.host.steps)} steps done")
    if p.running_step >= 0:
        return interrupted(run, p)
    step = run.host.steps[p.step_index]
    remote = run.call(p, lambda: run.adapters.remotes.get(run.host))
    if step.kind == "upload":
        assert step.src is not None
        src = step.src
        run.call(p, lambda: remote.upload(src, step.dest, mode=step.mode))
        p.step_index += 1
        return Next(step.label)
    # Written down before the command starts: a worker that dies inside it leaves the marker, and
    # whoever resumes knows the command may have half-run.
    p.running_step = p.step_index
    run.store.save(run.host.name, S.UPDATING, p)
    run.store.hold(run.host.name, step.timeout + 60)
    pidfile = pid_file(run.spec.rollout_id, run.host.name, p.step_index)
    try:
        result = remote.run(wrap(run.adapters.secrets.shell(step.command), pidfile), timeout=step.timeout)
    except CommandTimeout:
        run.adapters.remotes.discard(run.host)
        raise  # running_step stays set: the revert stops the command first
    p.running_step = -1
    p.work += result.duration
    if not result.ok:
        raise CommandFailed(repr(step.label), result, host=run.host.name)
    p.step_index += 1
    return Next(f"exit 0 in {result.duration:.2f}s", result.exit_code, result.tail(5))


def interrupted(run: HostRun, p: Progress) -> Decision:
    """A command was cut off midway (its worker died). Never run it again on top of itself: go back to
    the snapshot and apply the whole update again from its first step."""
    step = p.running_step
    snapshots = run.adapters.snapshots(run.host)
    if not p.snapshot or snapshots is None:
        return Fail(
            f"update[{step}] was interrupted and there is no snapshot to return to; the server's "
            "state is unknown"
        )
    stopped = (
        "the revert replaces its memory" if reverted_memory_ends_commands(run) else stop_leftover(run, p)
    )
    hold_for_hypervisor(run)
    run.call(p, lambda: snapshots.revert(run.host.domain, p.snapshot))
    run.adapters.remotes.discard(run.host)
    p.running_step = -1
    p.step_index = 0
    return Next(
        f"interrupted (worker lost); {stopped}; reverted to {p.snapshot}, applying the update again",
        outcome="interrupted",
    )


def stop_leftover(run: HostRun, p: Progress) -> str:
    """A command cut off midway may still run on the host: stop it before the revert, or it would
    finish on top of it. Over a fresh connection (the old one is dead or hung)."""
    run.adapters.remotes.discard(run.host)
    pidfile = pid_file(run.spec.rollout_id, run.host.name, p.running_step)
    remote = run.call(p, lambda: run.adapters.remotes.get(run.host))
    result = remote.run(stop_script(pidfile), timeout=60)
    if not result.ok:
        raise RemoteError(
            f"could not stop the cut-off update[{p.running_step}] on {run.host.name} "
            f"(exit {result.exit_code}: {result.tail(1)}); not reverting under it",
            host=run.host.name,
            result=result,
        )
    return result.stdout.strip() or "no leftover command"


# -- the marker shell


def pid_file(rollout_id: str, host: str, step: int) -> str:
    return f"/tmp/orchestrator-{rollout_id}-{host}-update{step}.pid"


def wrap(command: str, pidfile: str) -> str:
    """The command line that runs ``command`` with its process group recorded in ``pidfile``. sshd makes
    the remote shell a session (and process group) leader, so ``$$`` is the group to stop."""
    f = shlex.quote(pidfile)
    return f"echo $$ > {f}; sh -c {shlex.quote(command)}; rc=$?; rm -f {f}; exit $rc"


def stop_script(pidfile: str, wait: int = 30) -> str:
    """A POSIX sh script (busybox too) that stops a cut-off command's process group, waiting up to
    ``wait`` seconds after SIGTERM before SIGKILL. Prints what it did."""
    f = shlex.quote(pidfile)
    return (
        f"f={f}; [ -f \"$f\" ] || {{ echo 'no leftover command'; exit 0; }}; "
        'pg=$(cat "$f"); case "$pg" in \'\'|*[!0-9]*) rm -f "$f"; echo \'bad pid file\'; exit 0;; esac; '
        'alive() { grep -qF "$f" /proc/"$pg"/cmdline 2>/dev/null; }; '
        'if alive; then kill -TERM -- -"$pg" 2>/dev/null; i=0; '
        f"while alive && [ $i -lt {wait} ]; do sleep 1; i=$((i+1)); done; "
        'if alive; then kill -KILL -- -"$pg" 2>/dev/null; echo "killed group $pg"; '
        'else echo "stopped group $pg"; fi; else echo \'the cut-off command had ended\'; fi; rm -f "$f"'
    )
