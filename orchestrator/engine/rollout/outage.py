"""The store as the engine uses it: when it does not answer (restarted, failing over, disk full), every
call waits with backoff, within an outage budget, instead of failing the rollout.

While a call waits, the tick that made it holds its host where it is: no step begins whose result
could not be recorded (each step's state is saved before its action), and a step in flight finishes and
its result is recorded once the store answers. Past the budget the call raises StoreUnavailable; the
coordinator then re-sends the tick through the broker (the host still holds). Once the store answers
again, the coordinator records every outage in the journal, and one past the budget also pauses the
rollout for it (PauseCause.STORE) until a host goes on. Each outage is counted, so a tick that lived
through one re-checks its claim on the host before acting again: another worker may have taken over
meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestrator.errors import StoreUnavailable

log = logging.getLogger(__name__)


def _backoff(attempt: int) -> float:
    return min(5.0, 0.2 * float(2 ** min(attempt, 10)))


class PatientStore:
    """Wraps a store: the same methods, each waiting out StoreUnavailable within ``budget`` seconds
    counted from when the store stopped answering (not per call: ten calls do not wait ten budgets)."""

    def __init__(
        self,
        store: Any,
        *,
        budget: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.budget = budget
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.outages = 0  # outages lived through: a tick that saw this change must re-check its claim
        self.last_outage = 0.0  # how long the last one lasted, in seconds
        self._reported: set[tuple[str, int]] = set()
        self._failing: set[str] = set()  # the methods that failed in the current outage
        self._overruns: set[str] = set()  # who said, in the current outage, that it went past the budget

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def patient(*args: Any, **kwargs: Any) -> Any:
            attempt = 0
            while True:
                try:
                    result = attribute(*args, **kwargs)
                except StoreUnavailable as exc:
                    if self._down(name, exc) > self.budget:
                        raise
                    self._sleep(_backoff(attempt))
                    attempt += 1
                    continue
                self._up(name)
                return result

        return patient

    def _down(self, name: str, exc: StoreUnavailable) -> float:
        with self._lock:
            now = self._clock()
            self._failing.add(name)
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "store unavailable: %s; every host holds where it is, for up to %gs",
                    exc,
                    self.budget,
                )
            return now - self._down_since

    def _up(self, name: str) -> None:
        """The outage ends when a call that failed in it succeeds. Others answering prove less: on a
        full disk or a read-only filesystem, reads still answer while every write fails."""
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None or name not in self._failing:
                return
            self._failing.clear()
            self._overruns.clear()
            self.last_outage = self._clock() - self._down_since
            self._down_since = None
            self.outages += 1
        log.warning("the store answers again after %.1fs", self.last_outage)

    def first_overrun(self, who: str) -> bool:
        """True the first time ``who`` finds the current outage past its budget: one line each, not one
        per retry."""
        with self._lock:
            if who in self._overruns:
                return False
            self._overruns.add(who)
            return True

    def outage_to_report(self, rollout_id: str) -> float | None:
        """The last outage's length if this rollout has not recorded it yet (a short one too: the
        journal shows every outage a host held through, not only those that paused the rollout)."""
        with self._lock:
            if self.outages == 0 or (rollout_id, self.outages) in self._reported:
                return None
            self._reported.add((rollout_id, self.outages))
            return self.last_outage

    @property
    def down_for(self) -> float:
        """Seconds since the store stopped answering (0 while it answers)."""
        since = self._down_since
        return 0.0 if since is None else self._clock() - since
