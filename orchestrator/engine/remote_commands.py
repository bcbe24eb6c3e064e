"""Update commands that can be found and stopped after their worker is gone.

Closing an SSH connection does not stop a command run without a terminal: a command cut off by a dead
worker or a dropped connection goes on running on the host, and would finish on top of the revert that
follows. So each update command runs under a small shell that writes its process group id to a pid file
named after the rollout, host and step, and removes it when the command ends. Before reverting a host
whose command was cut off, the leftover group is stopped, but only if its command line still carries
that pid file's name: a process id reused by something else is never touched.
"""

from __future__ import annotations

import shlex


def pid_file(rollout_id: str, host: str, step: int) -> str:
    return f"/tmp/orchestrator-{rollout_id}-{host}-update{step}.pid"


def wrap(command: str, pidfile: str) -> str:
    """The command line that runs ``command`` with its process group recorded in ``pidfile``. sshd makes
    the remote shell a session (and process group) leader, so ``$$`` is the group to stop."""
    f = shlex.quote(pidfile)
    return f"echo $$ > {f}; sh -c {shlex.quote(command)}; rc=$?; rm -f {f}; exit $rc"


def stop_leftover(pidfile: str, wait: int = 30) -> str:
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
