"""The availability sampler: while rollouts run, what their pools' load balancers show, every
ORCH_LB_SAMPLE_EVERY seconds (servers in service, sessions, error counters), kept compactly in the
store for the change report. Each worker runs one; the slot key keeps one sample per slot."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from orchestrator.adapters.loadbalancers.base import LoadBalancer
from orchestrator.errors import OrchestratorError
from orchestrator.model.inventory import HAProxyConfig
from orchestrator.store.db import Store
from orchestrator.store.samples import Sample, record_sample

log = logging.getLogger(__name__)


def sample_once(store: Store, loadbalancer: Callable[[HAProxyConfig], LoadBalancer], every: float) -> int:
    """One sample of every active rollout's pool; returns how many were kept."""
    kept = 0
    for rollout in store.active_rollouts():
        try:
            servers = loadbalancer(rollout.spec.loadbalancer).servers()
        except OrchestratorError as exc:  # the watch pauses the rollout; a gap in samples says so
            log.debug("availability sample of %s skipped: %s", rollout.id, exc)
            continue
        at = time.time()
        per_server = {s.server: [int(s.in_service), s.sessions, *s.errors] for s in servers}
        sample = Sample(
            at,
            sum(1 for s in servers if s.in_service),
            len(servers),
            sum(s.sessions for s in servers),
            per_server,
        )
        kept += record_sample(store, rollout.id, int(at // every), sample)
    return kept


def sample_forever(
    store: Store,
    loadbalancer: Callable[[HAProxyConfig], LoadBalancer],
    every: float,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            sample_once(store, loadbalancer, every)
        except OrchestratorError as exc:  # a store outage: the engine waits it out, so do we
            log.debug("availability sampling: %s", exc)
        except Exception:
            log.exception("availability sampling failed; trying again")
        stop.wait(max(0.05, every - (time.monotonic() - started)))
