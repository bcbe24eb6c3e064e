"""The one retry policy: transient adapter errors (a refused connection, a reset) are retried a few
times with backoff; everything else fails at once. Adapters never retry; Celery never autoretries.

Retries are visible: by default each one is a warning in the log and a count in
``orchestrator_retries_total{error=...}`` (the error's class: a bounded label), which the worker's
metrics server exports beside the store's figures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRIES = Counter(
    "orchestrator_retries",
    "Adapter calls retried after a transient error, by the error's kind",
    ["error"],
    registry=None,  # registered by the metrics server, not in the global default registry
)


def log_retry(exc: BaseException, attempt: int) -> None:
    """The default hook: one warning line and one count per retry."""
    RETRIES.labels(type(exc).__name__).inc()
    log.warning("retrying after attempt %d failed with a transient error: %s", attempt, exc)


def _transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))


class RetryPolicy:
    def __init__(
        self,
        *,
        attempts: int = 4,
        max_delay: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[BaseException, int], None] | None = log_retry,
    ) -> None:
        self._attempts = attempts
        self._max_delay = max_delay
        self._sleep = sleep
        self._on_retry = on_retry

    def call(self, fn: Callable[[], T]) -> T:
        def before_sleep(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            if self._on_retry and outcome is not None and outcome.exception() is not None:
                self._on_retry(outcome.exception(), getattr(state, "attempt_number", 0))

        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._attempts) | stop_after_delay(self._max_delay),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)
