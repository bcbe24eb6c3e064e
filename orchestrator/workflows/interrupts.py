"""Ctrl-C (or SIGTERM) on a CLI that runs the rollout's worker itself: a pause, not a desertion.

The first signal says what will happen and does it: the rollout is paused (no new host starts), the
hosts in flight finish their pipeline (or their revert) and go back to the pool, then the CLI exits,
naming the rollout, its state and the `resume` command. A second signal leaves at once and says which
servers are out of the pool, in which step, and how to go on: nothing is left out without the screen
saying so.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType

from orchestrator.display import printable
from orchestrator.model.records import HostStatus, Step
from orchestrator.model.states import OUT_OF_SERVICE, TERMINAL, HostState


class LeftAtOnce(Exception):
    pass


class Interrupts:
    """Counts SIGINT and SIGTERM while active (main thread only); the second one raises LeftAtOnce, or
    the first when ``patient`` is False (nothing to wait for: the workers run elsewhere)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, patient: bool = True) -> None:
        self.count = 0
        self.patient = patient
        self._previous: dict[int, object] = {}
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> Interrupts:
        if self._active:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count >= 2 or not self.patient:
            raise LeftAtOnce

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def requested(self) -> bool:
        return self.count > 0


def in_flight(hosts: list[HostStatus]) -> list[HostStatus]:
    return [h for h in hosts if h.state not in TERMINAL and h.state is not HostState.PENDING]


def left_out(hosts: list[HostStatus], steps: list[Step], rollout_id: str) -> list[str]:
    """The lines a second Ctrl-C prints: every server this rollout holds out of the pool, where it
    stands, and how to go on."""
    now = time.time()
    lines = []
    for host in hosts:
        if host.state not in OUT_OF_SERVICE and host.state not in (HostState.RETURNING, HostState.RESTORING):
            continue
        mine = [s for s in steps if s.host == host.name]
        step = f", step {mine[-1].step} ({mine[-1].outcome})" if mine else ""
        since = f" for {now - host.progress.since:.0f}s" if host.progress.since else ""
        lines.append(
            printable(f"  {host.name}: {host.state.value}{since}{step}: OUT of the load balancer pool")
        )
    if lines:
        lines.append(
            f"  the rollout stays paused; `orchestrator resume {rollout_id}` finishes those hosts and goes on"
        )
    else:
        lines.append(f"  every server is in service; `orchestrator resume {rollout_id}` goes on")
    return lines
