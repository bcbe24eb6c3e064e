"""Where the server changes: out of the pool (maint), the snapshot, the update steps, and what to do
when an update command was cut off midway.

Update commands that can be found and stopped after their worker is gone: closing an SSH connection
does not stop a command run without a terminal, so a command cut off by a dead worker or a dropped
connection goes on running on the host, and would finish on top of the revert that follows. Each update
command runs under a small shell that writes its process group id to a pid file named after the
rollout, host and step, and removes it when the command ends. Before reverting a host whose command was
cut off, the leftover group is stopped, but only if its command line still carries that pid file's
name: a process id reused by something else is never touched.

A command can also end on its own while nobody can record it: its worker died after the command ended,
or the store stopped answering past its outage budget. The small shell writes the command's exit status
to a file named after that one start of it (a fresh id each time, so an earlier attempt's status is never
read for a later one) before it removes the pid file. Whoever resumes reads it: an update step that
exited 0 counts as done and the update goes on with the next step instead of reverting and applying
everything again; a non-zero status fails the host as it would have at the time.
"""

from __future__ import annotations

import re
import shlex
import uuid

from orchestrator.engine.host.decisions import Decision, Fail, Goto, Next
from orchestrator.engine.host.run import HostRun
from orchestrator.errors import CommandFailed, CommandTimeout, HypervisorError, RemoteError
from orchestrator.model.inventory import LibvirtConfig
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState
from orchestrator.results import CommandResult

S = HostState


def out_of_pool(run: HostRun, p: Progress) -> Decision:
    run.set_lb(p, "maint")
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
    run.store.record_event(
        run.host.name, "snapshot.created", domain=run.host.domain, name=name, memory=run.spec.snapshot_memory
    )
    return Goto(S.UPDATING, f"snapshot {name} of {run.host.domain}")


def hold_for_hypervisor(run: HostRun) -> None:
    """A snapshot call may take up to the hypervisor's bound: keep the host claimed that long, or the
    reconciler would take the host for stalled and start a second tick on it."""
    run.store.hold(run.host.name, run.spec.snapshot_timeout + 60)


def reverted_memory_ends_commands(run: HostRun) -> bool:
    """A libvirt memory-and-disk revert replaces every process of the guest: a command cut off midway
    dies with the memory, so nothing needs stopping over SSH first (the guest may not even answer).
    Without snapshots nothing is reverted: a cut-off command must be stopped, or it would go on."""
    spec = run.spec
    return spec.snapshot_enabled and isinstance(spec.hypervisor, LibvirtConfig) and spec.snapshot_memory


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
    p.run_id = uuid.uuid4().hex[:12]
    run.store.save(run.host.name, S.UPDATING, p)
    run.store.hold(run.host.name, step.timeout + 60)
    rid, name = run.spec.rollout_id, run.host.name
    command = wrap(
        run.adapters.secrets.shell(step.command),
        pid_file(rid, name, p.step_index),
        result_file(rid, name, p.step_index, p.run_id),
    )
    try:
        result = remote.run(command, timeout=step.timeout)
    except CommandTimeout:
        run.adapters.remotes.discard(run.host)
        raise  # running_step stays set: the revert stops the command first
    p.running_step = -1
    p.work += result.duration
    if not result.ok:
        raise CommandFailed(repr(step.label), result, host=run.host.name)
    p.step_index += 1
    return Next(
        f"exit 0 in {result.duration:.2f}s", result.exit_code, result.tail(5), output_sha256=result.digest
    )


def interrupted(run: HostRun, p: Progress) -> Decision:
    """A command was started and its end was never recorded. If it ended on its own, its exit status
    on the host says how: go on from there. Otherwise it was cut off midway (its worker died): never
    run it again on top of itself; go back to the snapshot and apply the whole update from its first
    step."""
    step = p.running_step
    memory = reverted_memory_ends_commands(run)
    found = read_status(run, p) if memory else stop_leftover(run, p)
    ended = ended_with(found)
    if ended is not None:
        return ended_unrecorded(run, p, ended)
    snapshots = run.adapters.snapshots(run.host)
    if not p.snapshot or snapshots is None:
        return Fail(
            f"update[{step}] was interrupted and there is no snapshot to return to; the server's "
            "state is unknown"
        )
    stopped = "the revert replaces its memory" if memory else found
    hold_for_hypervisor(run)
    run.call(p, lambda: snapshots.revert(run.host.domain, p.snapshot))
    run.store.record_event(run.host.name, "snapshot.reverted", domain=run.host.domain, name=p.snapshot)
    run.adapters.remotes.discard(run.host)
    p.running_step = -1
    p.step_index = 0
    return Next(
        f"interrupted (worker lost); {stopped}; reverted to {p.snapshot}, applying the update again",
        outcome="interrupted",
    )


def ended_unrecorded(run: HostRun, p: Progress, exit_code: int) -> Decision:
    """The command ended on its own and nobody recorded it: record it now, from its status file."""
    step = run.host.steps[p.running_step]
    p.running_step = -1
    p.run_id = ""
    detail = (
        f"exit {exit_code}, read from the host: it ended while nobody could record it (its output is lost)"
    )
    if exit_code != 0:
        result = CommandResult(
            command=step.label, exit_code=exit_code, stdout="", stderr=detail, duration=0.0
        )
        raise CommandFailed(repr(step.label), result, host=run.host.name)
    p.step_index += 1
    return Next(detail, exit_code)


_ENDED = re.compile(r"^ended with exit (\d{1,3})$", re.MULTILINE)


def ended_with(found: str) -> int | None:
    """The exit status a status or stop script read from the host; None when the command did not end
    on its own (it was stopped, or never started, or its status was lost)."""
    match = _ENDED.search(found)
    return int(match.group(1)) if match else None


def read_status(run: HostRun, p: Progress) -> str:
    """Only look, never stop (a memory revert ends the command anyway): whether the command ended on
    its own. A guest that does not answer is one whose command did not end on its own, for all we know."""
    run.adapters.remotes.discard(run.host)
    script = status_script(
        pid_file(run.spec.rollout_id, run.host.name, p.running_step),
        result_file(run.spec.rollout_id, run.host.name, p.running_step, p.run_id),
    )
    try:
        remote = run.adapters.remotes.get(run.host)
        return remote.run(script, timeout=10).stdout
    except (RemoteError, OSError):
        return "the guest does not answer"
    finally:
        run.adapters.remotes.discard(run.host)


def stop_leftover(run: HostRun, p: Progress) -> str:
    """A command cut off midway may still run on the host: stop it before the revert, or it would
    finish on top of it. Over a fresh connection (the old one is dead or hung). Says "ended with exit
    N" instead when the command had ended on its own and left its status."""
    run.adapters.remotes.discard(run.host)
    pidfile = pid_file(run.spec.rollout_id, run.host.name, p.running_step)
    status = result_file(run.spec.rollout_id, run.host.name, p.running_step, p.run_id)
    remote = run.call(p, lambda: run.adapters.remotes.get(run.host))
    result = remote.run(stop_script(pidfile, status), timeout=60)
    if not result.ok:
        raise RemoteError(
            f"could not stop the cut-off update[{p.running_step}] on {run.host.name} "
            f"(exit {result.exit_code}: {result.tail(1)}); not reverting under it",
            host=run.host.name,
            result=result,
        )
    return result.stdout.strip() or "no leftover command"


# -- the marker shell


def _prefix(rollout_id: str, host: str) -> str:
    # Both names are checked against their character set (letters, digits, . _ -) before any rollout.
    return f"/tmp/orchestrator-{rollout_id}-{host}-update"


def pid_file(rollout_id: str, host: str, step: int) -> str:
    return f"{_prefix(rollout_id, host)}{step}.pid"


def result_file(rollout_id: str, host: str, step: int, run_id: str) -> str:
    return f"{_prefix(rollout_id, host)}{step}-{run_id or 'none'}.rc"


def wrap(command: str, pidfile: str, status: str) -> str:
    """The command line that runs ``command`` with its process group recorded in ``pidfile`` and its
    exit status written to ``status`` before the pid file goes. sshd makes the remote shell a session
    (and process group) leader, so ``$$`` is the group to stop. Status files of earlier steps of this
    host go first: their results are recorded, since this step starts only after that."""
    f, r = shlex.quote(pidfile), shlex.quote(status)
    earlier = shlex.quote(status.rsplit("update", 1)[0] + "update") + "*.rc"
    return (
        f"rm -f {earlier}; echo $$ > {f}; sh -c {shlex.quote(command)}; rc=$?; "
        f"echo $rc > {r}; rm -f {f}; exit $rc"
    )


def _ended(status: str) -> str:
    """sh that prints how a command that is not running any more ended, from its status file."""
    r = shlex.quote(status)
    return (
        f"r={r}; case \"$(cat \"$r\" 2>/dev/null)\" in ''|*[!0-9]*) echo 'no leftover command';; "
        '*) echo "ended with exit $(cat "$r")";; esac'
    )


def status_script(pidfile: str, status: str) -> str:
    """A POSIX sh script that only looks: whether the command still runs, or how it ended."""
    f = shlex.quote(pidfile)
    return f"if [ -f {f} ]; then echo 'still running or cut off'; else {_ended(status)}; fi"


def stop_script(pidfile: str, status: str, wait: int = 30) -> str:
    """A POSIX sh script (busybox too) that stops a cut-off command's process group, waiting up to
    ``wait`` seconds after SIGTERM before SIGKILL. Prints what it did, or how the command ended when it
    had ended on its own."""
    f = shlex.quote(pidfile)
    return (
        f'f={f}; [ -f "$f" ] || {{ {_ended(status)}; exit 0; }}; '
        'pg=$(cat "$f"); case "$pg" in \'\'|*[!0-9]*) rm -f "$f"; echo \'bad pid file\'; exit 0;; esac; '
        # The arguments are NUL-separated: busybox grep stops reading a line at the first NUL.
        'alive() { tr "\\000" " " < /proc/"$pg"/cmdline 2>/dev/null | grep -qF "$f"; }; '
        # `kill -s SIG -- -PGID`: the one spelling dash, bash and busybox all read as a process group
        # (dash takes `kill -TERM -- -PGID` for a bad number and signals nothing).
        'if alive; then kill -s TERM -- -"$pg" 2>/dev/null; i=0; '
        f"while alive && [ $i -lt {wait} ]; do sleep 1; i=$((i+1)); done; "
        'if alive; then kill -s KILL -- -"$pg" 2>/dev/null; sleep 1; '
        'if alive; then echo "could not stop group $pg"; exit 1; fi; echo "killed group $pg"; '
        'else echo "stopped group $pg"; fi; else echo \'the cut-off command had ended\'; fi; rm -f "$f"'
    )
