"""Processes of this machine, by pid: alive or not, and stopped the patient way."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from orchestrator.errors import ConfigError

# This process, as leases and claims name it: machine and pid, so that a dead local owner can be told.
OWNER = f"{socket.gethostname()}/{os.getpid()}"


def alive(pid: int, comm_prefix: str = "") -> bool:
    """True if ``pid`` runs (not a zombie waiting to be reaped, not dead) and its command name starts
    with ``comm_prefix``, so a pid recycled by another program does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, so cut at the last ")".
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
    return comm.startswith(comm_prefix) and state not in ("Z", "X")


def terminate(pid: int, comm_prefix: str, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL and wait again; raise if it still runs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid, comm_prefix):
            return
        with contextlib.suppress(ProcessLookupError):  # it may exit between the check and the signal
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while alive(pid, comm_prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
    if alive(pid, comm_prefix):
        raise ConfigError(f"{comm_prefix or 'process'} pid {pid} survived SIGKILL for {timeout:.0f} s")
