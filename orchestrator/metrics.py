"""Prometheus metrics, computed from the store at scrape time.

Nothing in the engine counts anything: every scrape reads the store (and, for pools being updated, the
load balancer), so every worker, the CLI and any number of processes export the same numbers, and a
restart loses nothing. Labels stay bounded: pool, state, step name, outcome. The one exception is
``orchestrator_rollout_active``, an info-style series per rollout that is not over yet (one per pool).
No URL, path or credential ever becomes a label.

A scrape never hangs on the load balancer: its runtime API is asked with a short timeout, and a pool
whose load balancer does not answer exports ``orchestrator_loadbalancer_up{pool} 0``. A store that
cannot be read exports ``orchestrator_store_up 0`` and nothing else.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.engine.rollout.capacity import pool_picture
from orchestrator.engine.wiring import haproxy
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.model.records import Rollout
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import ROLLOUT_DONE, HostState, RolloutState
from orchestrator.retry import RETRIES
from orchestrator.store.db import Store
from orchestrator.store.schema import HostRow, RolloutRow, StepRow

log = logging.getLogger(__name__)

STEP_WINDOW = 7 * 86400.0  # step durations and counts cover the steps started this recently
LB_TIMEOUT = 1.0  # seconds per runtime API command during a scrape (a read is two commands)
QUANTILES = (0.5, 0.9, 1.0)

ServersReader = Callable[[RolloutSpec], list[ServerState]]


def live_servers(timeout: float = LB_TIMEOUT) -> ServersReader:
    """Reads the pool's servers from HAProxy with at most ``timeout`` seconds per command."""

    def read(spec: RolloutSpec) -> list[ServerState]:
        return haproxy(spec.loadbalancer, timeout=timeout).servers()

    return read


def step_label(step: str) -> str:
    """Journal step names with their update index folded in: "update[3]" counts as "update"."""
    return re.sub(r"\[\d+\]$", "", step)


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending, non-empty list (q=1 is the maximum)."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


@dataclass
class Reading:
    """What one scrape read from the store, before any metric is built."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (pool, state) -> rollouts
    last_finished: dict[tuple[str, str], float] = field(default_factory=dict)  # (pool, done state)
    active: list[Rollout] = field(default_factory=list)
    host_states: dict[str, list[HostState]] = field(default_factory=dict)  # rollout id -> states
    last_progress: dict[str, float] = field(default_factory=dict)  # rollout id -> timestamp
    failed_out: dict[str, tuple[RolloutSpec, list[str]]] = field(default_factory=dict)  # pool -> latest
    step_durations: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (pool, step)
    step_counts: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (pool, step, outcome)

    @property
    def pools(self) -> set[str]:
        return {pool for pool, _ in self.counts}


def read_store(store: Store, at: float, step_window: float = STEP_WINDOW) -> Reading:
    reading = Reading()
    with store.session() as s:
        grouped = s.execute(
            select(
                RolloutRow.pool, RolloutRow.state, func.count(), func.max(RolloutRow.finished_at)
            ).group_by(RolloutRow.pool, RolloutRow.state)
        ).all()
        done = {x.value for x in ROLLOUT_DONE}
        for pool, state, count, finished in grouped:
            reading.counts[(pool, state)] = int(count)
            if state in done and finished is not None:
                reading.last_finished[(pool, state)] = float(finished)
        latest: dict[str, tuple[float, str]] = {}
        for rollout_id, pool, created in s.execute(
            select(RolloutRow.id, RolloutRow.pool, RolloutRow.created_at)
        ):
            if pool not in latest or created > latest[pool][0]:
                latest[pool] = (created, rollout_id)
        latest_ids = [rollout_id for _, rollout_id in latest.values()]
        failed_out_rows = s.execute(
            select(HostRow.rollout_id, HostRow.name).where(
                HostRow.rollout_id.in_(latest_ids), HostRow.state == HostState.FAILED_OUT.value
            )
        ).all()
        steps = s.execute(
            select(RolloutRow.pool, StepRow.step, StepRow.outcome, StepRow.started_at, StepRow.ended_at)
            .join(RolloutRow, RolloutRow.id == StepRow.rollout_id)
            .where(StepRow.started_at >= at - step_window)
        ).all()
    _read_steps(reading, steps)
    names: dict[str, list[str]] = defaultdict(list)
    for rollout_id, name in failed_out_rows:
        names[rollout_id].append(name)
    for rollout_id, hosts in names.items():
        rollout = store.rollout(rollout_id)
        if rollout is not None:
            reading.failed_out[rollout.pool] = (rollout.spec, sorted(hosts))
    reading.active = store.active_rollouts()
    for rollout in reading.active:
        reading.host_states[rollout.id] = [h.state for h in store.hosts(rollout.id)]
        reading.last_progress[rollout.id] = store.last_progress(rollout.id, at)
    return reading


def _read_steps(reading: Reading, rows: Iterable[Any]) -> None:
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for pool, step, outcome, started, ended in rows:
        name = step_label(step)
        counts[(pool, name, outcome)] += 1
        if outcome == "ok" and ended is not None:
            durations[(pool, name)].append(max(0.0, ended - started))
    reading.step_durations = {key: sorted(values) for key, values in durations.items()}
    reading.step_counts = dict(counts)


@dataclass(frozen=True)
class PoolLive:
    up: bool
    servers: list[ServerState]


def read_loadbalancers(
    reading: Reading, servers: ServersReader
) -> tuple[dict[str, PoolLive], dict[str, str]]:
    """The live servers of every pool being updated, or left with a server out by its latest rollout;
    and why each unreadable one could not be read."""
    specs: dict[str, RolloutSpec] = {pool: spec for pool, (spec, _) in reading.failed_out.items()}
    specs.update({r.pool: r.spec for r in reading.active})  # newest last: the active spec wins
    live: dict[str, PoolLive] = {}
    errors: dict[str, str] = {}
    for pool, spec in sorted(specs.items()):
        try:
            live[pool] = PoolLive(True, servers(spec))
        except OrchestratorError as exc:
            live[pool] = PoolLive(False, [])
            errors[pool] = f"metrics: load balancer of pool {pool} unreadable: {exc}"
    return live, errors


def families(reading: Reading, live: dict[str, PoolLive], at: float) -> Iterator[GaugeMetricFamily]:
    """The metrics of one scrape, from what was read (pure)."""
    yield GaugeMetricFamily("orchestrator_store_up", "1 if the orchestrator's store could be read", 1)

    rollouts = GaugeMetricFamily(
        "orchestrator_rollouts", "Rollouts in the store by pool and current state", labels=["pool", "state"]
    )
    for pool in sorted(reading.pools):
        for state in RolloutState:
            rollouts.add_metric([pool, state.value], reading.counts.get((pool, state.value), 0))
    yield rollouts

    finished = GaugeMetricFamily(
        "orchestrator_rollout_last_finished_timestamp_seconds",
        "Unix time the pool's latest rollout ending in this state finished",
        labels=["pool", "state"],
    )
    for (pool, done), t in sorted(reading.last_finished.items()):
        finished.add_metric([pool, done], t)
    yield finished

    yield from _active(reading, at)
    yield from _pools(reading, live)
    yield from _steps(reading)


def _active(reading: Reading, at: float) -> Iterator[GaugeMetricFamily]:
    active = GaugeMetricFamily(
        "orchestrator_rollout_active",
        "1 for each rollout that is not over (at most one per pool)",
        labels=["pool", "rollout", "name", "state"],
    )
    hosts = GaugeMetricFamily(
        "orchestrator_hosts", "Hosts of the pool's active rollout by state", labels=["pool", "state"]
    )
    progress = GaugeMetricFamily(
        "orchestrator_rollout_last_progress_seconds",
        "Seconds since the pool's active rollout last made progress (host saved, step, action, lease)",
        labels=["pool"],
    )
    per_pool_hosts: dict[str, dict[HostState, int]] = {}
    quiet: dict[str, float] = {}
    for rollout in reading.active:
        active.add_metric([rollout.pool, rollout.id, rollout.name, rollout.state.value], 1)
        counts = per_pool_hosts.setdefault(rollout.pool, dict.fromkeys(HostState, 0))
        for state in reading.host_states.get(rollout.id, []):
            counts[state] += 1
        # Two active rollouts of one pool should not exist (the pool lock); if they do, the stalest counts.
        seconds = max(0.0, at - reading.last_progress.get(rollout.id, at))
        quiet[rollout.pool] = max(quiet.get(rollout.pool, 0.0), seconds)
    for pool, counts in sorted(per_pool_hosts.items()):
        for state, n in counts.items():
            hosts.add_metric([pool, state.value], n)
        progress.add_metric([pool], quiet[pool])
    yield active
    yield hosts
    yield progress


def _pools(reading: Reading, live: dict[str, PoolLive]) -> Iterator[GaugeMetricFamily]:
    up = GaugeMetricFamily(
        "orchestrator_loadbalancer_up",
        "1 if the pool's load balancer answered (asked for pools being updated or with a host out)",
        labels=["pool"],
    )
    servers = GaugeMetricFamily("orchestrator_pool_servers", "Servers in the pool's backend", labels=["pool"])
    in_service = GaugeMetricFamily(
        "orchestrator_pool_in_service", "Servers of the pool receiving traffic now", labels=["pool"]
    )
    floor = GaugeMetricFamily(
        "orchestrator_pool_capacity_floor",
        "Servers the active rollout must keep in service (larger of min_healthy, size - max_unavailable)",
        labels=["pool"],
    )
    out = GaugeMetricFamily(
        "orchestrator_hosts_out_of_pool",
        "Hosts the pool's latest rollout left failed_out and still out of service: a human must act",
        labels=["pool"],
    )
    active = {r.pool: r.spec for r in reading.active}
    for pool, state in sorted(live.items()):
        up.add_metric([pool], 1 if state.up else 0)
        if state.up and pool in active:
            capacity = pool_picture(state.servers, active[pool])
            servers.add_metric([pool], capacity.servers)
            in_service.add_metric([pool], capacity.in_service)
            floor.add_metric([pool], capacity.floor)
    for pool in sorted(reading.pools):
        out.add_metric([pool], _still_out(reading, live, pool))
    yield from (up, servers, in_service, floor, out)


def _still_out(reading: Reading, live: dict[str, PoolLive], pool: str) -> int:
    """failed_out hosts of the pool's latest rollout; once the load balancer shows one back in service (a
    human fixed it), it no longer counts. Unreadable load balancer: the store's word."""
    if pool not in reading.failed_out:
        return 0
    spec, names = reading.failed_out[pool]
    state = live.get(pool)
    if state is None or not state.up:
        return len(names)
    serving = {s.server for s in state.servers if s.in_service}
    return sum(1 for name in names if name not in spec.hosts or spec.hosts[name].lb_server not in serving)


def _steps(reading: Reading) -> Iterator[GaugeMetricFamily]:
    window = f"over steps started in the last {STEP_WINDOW / 86400:g} days"
    durations = GaugeMetricFamily(
        "orchestrator_step_duration_seconds",
        f"Duration of successful steps by pool and step, {window} (quantile 1 is the maximum)",
        labels=["pool", "step", "quantile"],
    )
    for (pool, step), values in sorted(reading.step_durations.items()):
        for q in QUANTILES:
            durations.add_metric([pool, step, f"{q:g}"], quantile(values, q))
    counts = GaugeMetricFamily(
        "orchestrator_step_attempts",
        f"Step attempts by pool, step and outcome, {window}",
        labels=["pool", "step", "outcome"],
    )
    for (pool, step, outcome), n in sorted(reading.step_counts.items()):
        counts.add_metric([pool, step, outcome], n)
    yield durations
    yield counts


class StoreCollector(Collector):
    """Reads the store on every scrape. The store is opened on the first scrape and again after a
    failure, so a database that is down when the process starts is picked up once it is back."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        *,
        servers: ServersReader | None = None,
        clock: Callable[[], float] = time.time,
        step_window: float = STEP_WINDOW,
    ) -> None:
        self._open_store = open_store
        self._servers = servers or live_servers()
        self._clock = clock
        self._step_window = step_window
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}  # what was last logged, per source (the store, each pool)

    def _store_or_open(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            return self._store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        at = self._clock()
        try:
            reading = read_store(self._store_or_open(), at, self._step_window)
        except Exception as exc:  # any database failure: the scrape still answers, saying so
            self._note({"": f"metrics: cannot read the store: {exc}"})
            self._drop_store()  # a database recreated or failed over is reopened at the next scrape
            yield GaugeMetricFamily("orchestrator_store_up", "1 if the orchestrator's store could be read", 0)
            return
        live, errors = read_loadbalancers(reading, self._servers)
        self._note(errors)
        yield from families(reading, live, at)

    def _drop_store(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.engine.dispose()

    def _note(self, errors: dict[str, str]) -> None:
        """Log each error once when it starts or changes, not on every scrape."""
        with self._lock:
            for source, message in errors.items():
                if self._errors.get(source) != message:
                    log.warning("%s", message)
            self._errors = dict(errors)


def registry_for(open_store: Callable[[], Store], **options: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(open_store, **options))
    registry.register(RETRIES)  # this process's own retries (a worker's adapter calls)
    return registry


@dataclass
class MetricsServer:
    server: Any  # wsgiref's WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(open_store: Callable[[], Store], port: int, address: str = "127.0.0.1") -> MetricsServer:
    """Serve /metrics in a daemon thread, for the life of the process (port 0: any free port, see
    ``.port``). ``open_store`` is called again after a store that failed."""
    registry = registry_for(open_store)
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {address}:{port}: {exc}; choose another --metrics-port or address"
        ) from exc
    return MetricsServer(server, thread)
