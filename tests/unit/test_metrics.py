"""Metrics read from a real SQLite store at scrape time: what each series says about rollouts, hosts,
steps and the live pool, that a dead load balancer or store never hangs or breaks a scrape, and that
labels stay bounded and free of secrets."""

from __future__ import annotations

import socket
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.adapters.loadbalancers.base import AdminState, ServerState
from orchestrator.errors import ConfigError, LoadBalancerError
from orchestrator.metrics import live_servers, quantile, registry_for, serve, step_label
from orchestrator.model.inventory import HAProxyConfig
from orchestrator.model.progress import Progress
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store.db import Store
from tests.unit.fakes import host_spec, rollout_spec, sqlite_store

S = HostState
TO_UPDATING = [S.DRAINING, S.OUT_OF_POOL, S.SNAPSHOTTING, S.UPDATING]
TO_SUCCEEDED = [*TO_UPDATING, S.CHECKING, S.RETURNING, S.SUCCEEDED]
TO_FAILED_OUT = [*TO_UPDATING, S.FAILED_OUT]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = sqlite_store(tmp_path)
    yield store
    store.engine.dispose()


def spec(
    rollout_id: str, pool: str = "web", hosts: tuple[str, ...] = ("web1", "web2", "web3"), **kw: Any
) -> RolloutSpec:
    return rollout_spec([host_spec(h) for h in hosts], rollout_id=rollout_id, pool=pool, **kw)


def walk(store: Store, rollout_id: str, host: str, states: list[HostState]) -> None:
    for state in states:
        store.save_host(rollout_id, host, state, Progress())


def pool_of(*states: tuple[str, str, AdminState]) -> Callable[[RolloutSpec], list[ServerState]]:
    servers = [ServerState("app", name, admin, status, 0) for name, status, admin in states]
    return lambda _spec: servers


def unreachable(spec: RolloutSpec) -> list[ServerState]:
    raise LoadBalancerError(f"HAProxy of {spec.pool} refused the connection", transient=True)


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def names(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in samples if n == name]


def test_an_empty_store_says_only_that_it_is_up(store: Store) -> None:
    samples = scrape(registry_for(lambda: store, servers=unreachable))
    assert samples == {("orchestrator_store_up", frozenset()): 1.0}


def test_an_active_rollout_its_hosts_and_a_finished_one(store: Store) -> None:
    store.create_rollout(spec("r1"))
    store.transition_rollout("r1", RolloutState.RUNNING)
    walk(store, "r1", "web1", TO_SUCCEEDED)
    walk(store, "r1", "web2", TO_UPDATING)
    before = time.time()
    store.create_rollout(spec("d1", pool="db", hosts=("db1",)))
    store.transition_rollout("d1", RolloutState.RUNNING)
    store.transition_rollout("d1", RolloutState.HALTED, reason="db1 failed its checks")
    after = time.time()

    samples = scrape(registry_for(lambda: store, servers=pool_of()))

    assert value(samples, "orchestrator_rollouts", pool="web", state="running") == 1
    assert value(samples, "orchestrator_rollouts", pool="web", state="succeeded") == 0
    assert value(samples, "orchestrator_rollouts", pool="db", state="halted") == 1
    finished = value(
        samples, "orchestrator_rollout_last_finished_timestamp_seconds", pool="db", state="halted"
    )
    assert finished is not None and before <= finished <= after
    assert names(samples, "orchestrator_rollout_last_finished_timestamp_seconds") == [
        {"pool": "db", "state": "halted"}
    ]
    assert names(samples, "orchestrator_rollout_active") == [
        {"pool": "web", "rollout": "r1", "name": "app-v2", "state": "running"}
    ]
    assert (
        value(
            samples, "orchestrator_rollout_active", pool="web", rollout="r1", name="app-v2", state="running"
        )
        == 1
    )
    hosts = {
        labels["state"]: samples[("orchestrator_hosts", frozenset(labels.items()))]
        for labels in names(samples, "orchestrator_hosts")
    }
    assert hosts == {state.value: 0 for state in HostState} | {"succeeded": 1, "updating": 1, "pending": 1}
    assert {labels["pool"] for labels in names(samples, "orchestrator_hosts")} == {"web"}  # active only


def test_last_progress_counts_from_the_latest_sign_of_life(store: Store) -> None:
    store.create_rollout(spec("r1"))
    store.transition_rollout("r1", RolloutState.RUNNING)
    before = time.time()
    walk(store, "r1", "web1", [S.DRAINING])
    saved = time.time()
    later = saved + 900  # the scrape happens 15 minutes after the host's last save
    samples = scrape(registry_for(lambda: store, servers=pool_of(), clock=lambda: later))
    quiet = value(samples, "orchestrator_rollout_last_progress_seconds", pool="web")
    assert quiet is not None and 900 <= quiet <= 900 + (saved - before)

    # A worker holding the host's lease over a long command is progress, though it writes nothing.
    token = store.new_token("r1", "web1")
    assert store.claim_host("r1", "web1", token, "worker-a", ttl=3600) == "claimed"
    samples = scrape(registry_for(lambda: store, servers=pool_of(), clock=lambda: later))
    assert value(samples, "orchestrator_rollout_last_progress_seconds", pool="web") == 0


def test_live_capacity_and_floor_of_a_pool_being_updated(store: Store) -> None:
    store.create_rollout(spec("r1", min_healthy="75%", max_unavailable=1))  # floor: ceil(2.25) = 3
    store.transition_rollout("r1", RolloutState.RUNNING)
    live = pool_of(
        ("web1", "MAINT", AdminState.MAINT),
        ("web2", "UP", AdminState.READY),
        ("web3", "UP 1/2", AdminState.READY),
    )
    samples = scrape(registry_for(lambda: store, servers=live))
    assert value(samples, "orchestrator_loadbalancer_up", pool="web") == 1
    assert value(samples, "orchestrator_pool_servers", pool="web") == 3
    assert value(samples, "orchestrator_pool_in_service", pool="web") == 2  # "UP 1/2" already serves
    assert value(samples, "orchestrator_pool_capacity_floor", pool="web") == 3

    samples = scrape(registry_for(lambda: store, servers=unreachable))
    assert value(samples, "orchestrator_loadbalancer_up", pool="web") == 0
    assert names(samples, "orchestrator_pool_in_service") == []
    assert value(samples, "orchestrator_store_up") == 1


def test_a_host_left_out_of_the_pool_counts_until_it_serves_again(store: Store) -> None:
    store.create_rollout(spec("r1"))
    store.transition_rollout("r1", RolloutState.RUNNING)
    walk(store, "r1", "web1", TO_FAILED_OUT)
    store.skip_pending("r1")
    store.transition_rollout("r1", RolloutState.HALTED, reason="web1 left out of the pool")
    out = ("web1", "MAINT", AdminState.MAINT)
    back = ("web1", "UP", AdminState.READY)
    others = [("web2", "UP", AdminState.READY), ("web3", "UP", AdminState.READY)]

    samples = scrape(registry_for(lambda: store, servers=pool_of(out, *others)))
    assert value(samples, "orchestrator_hosts_out_of_pool", pool="web") == 1
    assert names(samples, "orchestrator_rollout_active") == []
    assert names(samples, "orchestrator_pool_in_service") == []  # capacity is for rollouts in progress
    samples = scrape(registry_for(lambda: store, servers=unreachable))
    assert value(samples, "orchestrator_hosts_out_of_pool", pool="web") == 1  # the store's word
    assert value(samples, "orchestrator_loadbalancer_up", pool="web") == 0
    samples = scrape(registry_for(lambda: store, servers=pool_of(back, *others)))  # a human fixed it
    assert value(samples, "orchestrator_hosts_out_of_pool", pool="web") == 0

    store.create_rollout(spec("r2"))  # a later rollout of the pool supersedes the old picture
    samples = scrape(registry_for(lambda: store, servers=pool_of(out, *others)))
    assert value(samples, "orchestrator_hosts_out_of_pool", pool="web") == 0


def test_step_attempts_and_durations_by_step_name(store: Store) -> None:
    store.create_rollout(spec("r1"))
    for host, step, outcome in [
        ("web1", "drain", "ok"),
        ("web1", "update[0]", "ok"),
        ("web1", "update[1]", "ok"),
        ("web2", "drain", "ok"),
        ("web2", "update[0]", "failed"),
    ]:
        store.step_ended(store.step_started("r1", host, step), outcome)
    store.step_started("r1", "web3", "drain")  # still running: counted, no duration yet

    samples = scrape(registry_for(lambda: store, servers=pool_of()))
    assert value(samples, "orchestrator_step_attempts", pool="web", step="drain", outcome="ok") == 2
    assert value(samples, "orchestrator_step_attempts", pool="web", step="drain", outcome="running") == 1
    assert value(samples, "orchestrator_step_attempts", pool="web", step="update", outcome="ok") == 2
    assert value(samples, "orchestrator_step_attempts", pool="web", step="update", outcome="failed") == 1
    durations = {
        (labels["step"], labels["quantile"])
        for labels in names(samples, "orchestrator_step_duration_seconds")
    }
    assert durations == {(step, q) for step in ("drain", "update") for q in ("0.5", "0.9", "1")}
    p50 = value(samples, "orchestrator_step_duration_seconds", pool="web", step="update", quantile="0.5")
    top = value(samples, "orchestrator_step_duration_seconds", pool="web", step="update", quantile="1")
    assert p50 is not None and top is not None and 0 <= p50 <= top

    later = time.time() + 8 * 86400  # past the window: no step series at all
    samples = scrape(registry_for(lambda: store, servers=pool_of(), clock=lambda: later))
    assert names(samples, "orchestrator_step_attempts") == []


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 0.5, 1.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 0.9, 4.0),
        ([1.0, 2.0, 3.0], 1.0, 3.0),
    ],
)
def test_nearest_rank_quantile(values: list[float], q: float, expected: float) -> None:
    assert quantile(values, q) == expected


@pytest.mark.parametrize(
    ("step", "label"), [("update[0]", "update"), ("update[12]", "update"), ("drain", "drain")]
)
def test_update_steps_fold_into_one_label(step: str, label: str) -> None:
    assert step_label(step) == label


def test_labels_stay_bounded_and_secrets_never_appear(store: Store) -> None:
    store.create_rollout(spec("r1"))
    store.create_rollout(spec("r0", pool="db", hosts=("db1",)))
    store.transition_rollout("r0", RolloutState.RUNNING)
    store.transition_rollout("r0", RolloutState.SUCCEEDED)
    text = generate_latest(registry_for(lambda: store, servers=pool_of())).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name != "orchestrator_rollout_active":
                assert "rollout" not in sample.labels, sample
    assert "r0" not in text  # a finished rollout's id is on no series
    secret = "postgresql+psycopg://orch:s3cret-pw@127.0.0.1:1/orchestrator"
    text = generate_latest(registry_for(lambda: Store(secret))).decode()
    assert "orchestrator_store_up 0.0" in text and "s3cret" not in text


@pytest.mark.timeout(8)  # the engine's own connect timeout is 10 s: only the scrape's quick one passes
def test_a_postgresql_that_accepts_and_never_answers_gives_store_up_0_within_a_scrape() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nobody ever speaks
    try:
        url = f"postgresql+psycopg://orch:pw@127.0.0.1:{silent.getsockname()[1]}/orchestrator"
        assert scrape(registry_for(lambda: Store(url, quick=True))) == {
            ("orchestrator_store_up", frozenset()): 0.0
        }
    finally:
        silent.close()


def test_a_store_that_cannot_be_opened_is_retried_on_the_next_scrape(store: Store, tmp_path: Path) -> None:
    attempts: list[int] = []

    def open_store() -> Store:
        attempts.append(1)
        if len(attempts) == 1:
            (tmp_path / "a-file").write_text("")
            return Store(f"sqlite:///{tmp_path / 'a-file' / 'store.db'}")  # its folder cannot exist
        return store

    registry = registry_for(open_store, servers=pool_of())
    assert scrape(registry) == {("orchestrator_store_up", frozenset()): 0.0}
    assert value(scrape(registry), "orchestrator_store_up") == 1
    assert len(attempts) == 2


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="m") as folder:  # a unix socket path must stay < 108 bytes
        yield Path(folder)


@pytest.mark.timeout(10)  # the spec's own LB timeout is 30 s: only the scrape's short one can pass
@pytest.mark.parametrize("kind", ["refusing", "silent"])
def test_a_dead_load_balancer_socket_gives_loadbalancer_up_0_quickly(
    store: Store, short_dir: Path, kind: str
) -> None:
    path = short_dir / "lb.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    if kind == "silent":
        listener.listen(8)  # accepts connections into its backlog and never answers
    else:
        listener.close()  # the socket file stays, nobody listens: connection refused
    try:
        lb = HAProxyConfig(socket=path, backend="app", timeout=30)
        store.create_rollout(spec("r1", loadbalancer=lb))
        store.transition_rollout("r1", RolloutState.RUNNING)
        samples = scrape(registry_for(lambda: store, servers=live_servers(timeout=0.2)))
        assert value(samples, "orchestrator_loadbalancer_up", pool="web") == 0
        assert value(samples, "orchestrator_store_up") == 1
        assert (
            value(
                samples,
                "orchestrator_rollout_active",
                pool="web",
                rollout="r1",
                name="app-v2",
                state="running",
            )
            == 1
        )
    finally:
        listener.close()


def test_the_http_server_serves_the_private_registry(store: Store) -> None:
    server = serve(lambda: Store(store.url), 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert "orchestrator_store_up 1.0" in text
        assert "python_gc_objects_collected_total" not in text  # not the global default registry
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{server.port}"):
            serve(lambda: Store(store.url), server.port)
    finally:
        server.close()
