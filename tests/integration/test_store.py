"""The store on SQLite and on the real PostgreSQL of this machine: migrations, the pool lock, leases,
tick tokens, the batch compare-and-set, the transition table."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from orchestrator.errors import RolloutRefused, StateError
from orchestrator.model.inventory import HAProxyConfig, NoSnapshots
from orchestrator.model.progress import Progress
from orchestrator.model.spec import HostSpec, RolloutSpec, SSHSpec
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store.db import Store
from orchestrator.store.migrate import config

pytestmark = pytest.mark.integration


def spec(rollout_id: str, pool: str = "web", hosts: tuple[str, ...] = ("a", "b")) -> RolloutSpec:
    ssh = SSHSpec(
        address="127.0.0.1",
        port=22,
        user="root",
        key_file=Path("/k"),
        known_hosts=Path("/kh"),
        connect_timeout=5,
    )
    return RolloutSpec(
        rollout_id=rollout_id,
        name="n",
        pool=pool,
        playbook_path=Path("/p"),
        inventory_path=Path("/i"),
        batches=[[h] for h in hosts],
        drain_timeout=1,
        drain_on_timeout="fail",
        snapshot_enabled=False,
        snapshot_memory=True,
        snapshot_retention="keep",
        snapshot_timeout=1,
        stabilize_interval=0.1,
        stabilize_successes=1,
        stabilize_timeout=1,
        on_failure="halt",
        loadbalancer=HAProxyConfig(socket=Path("/s"), backend="app"),
        hypervisor=NoSnapshots(type="none"),
        hosts={
            h: HostSpec(
                name=h,
                address="127.0.0.1",
                domain=h,
                lb_server=h,
                ssh=ssh,
                steps=[],
                checks=[],
                revert_checks=[],
            )
            for h in hosts
        },
    )


def test_migrations_bring_the_schema_to_head(store: Store) -> None:
    with store.engine.connect() as connection:
        head = ScriptDirectory.from_config(config()).get_current_head()
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head
    Store(store.url)  # opening again is a no-op


def test_one_rollout_per_pool_and_the_lock_ends_with_the_rollout(store: Store) -> None:
    store.create_rollout(spec("r1"))
    with pytest.raises(RolloutRefused, match="pool web is being updated by rollout r1"):
        store.create_rollout(spec("r2"))
    store.create_rollout(spec("r3", pool="other"))  # another pool is free
    store.transition_rollout("r1", RolloutState.RUNNING)
    store.transition_rollout("r1", RolloutState.SUCCEEDED, reason="done")
    store.create_rollout(spec("r2"))


def test_a_stale_lock_is_taken_over_only_with_no_host_in_flight(store: Store) -> None:
    store.create_rollout(spec("r1"))
    store.transition_rollout("r1", RolloutState.RUNNING)
    store.save_host("r1", "a", HostState.DRAINING, Progress())
    time.sleep(0.05)
    with pytest.raises(RolloutRefused, match="orchestrator resume r1"):
        store.create_rollout(spec("r2"), stale_after=0.01)
    store.save_host("r1", "a", HostState.RESTORING, Progress())
    store.save_host("r1", "a", HostState.FAILED, Progress())
    time.sleep(0.05)
    store.create_rollout(spec("r2"), stale_after=0.01)
    old = store.rollout("r1")
    assert old is not None and old.state is RolloutState.FAILED and "superseded by r2" in old.reason
    assert store.actions("r1")[0][1] == "abandon"


def test_claims_honour_tokens_live_owners_and_dead_ones(store: Store) -> None:
    store.create_rollout(spec("r1"))
    token = store.new_token("r1", "a")
    assert store.claim_host("r1", "a", "old-token", "w1/1", 60) == "stale"
    assert store.claim_host("r1", "a", token, "w1/1", 60) == "claimed"
    assert store.claim_host("r1", "a", token, "w2/2", 60) == "busy"
    assert store.claim_host("r1", "a", token, "w2/2", 60, alive=lambda owner: owner != "w1/1") == "claimed"
    store.release_host("r1", "a", "w2/2")
    assert store.claim_host("r1", "a", token, "w3/3", 60) == "claimed"
    store.release_host("r1", "a", "w3/3")
    assert store.claim_host("r1", "a", store.new_token("r1", "a"), "w4/4", 0.01) == "claimed"
    time.sleep(0.05)
    assert store.claim_host("r1", "a", store.new_token("r1", "a"), "w5/5", 60) == "claimed"  # lease expired


def test_only_one_of_many_claims_the_next_batch(store: Store) -> None:
    store.create_rollout(spec("r1", hosts=("a", "b", "c")))
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(store.claim_next_batch("r1", 0))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(wins) == [False] * 7 + [True]


def test_the_store_refuses_illegal_transitions(store: Store) -> None:
    store.create_rollout(spec("r1"))
    with pytest.raises(StateError, match="pending -> succeeded"):
        store.save_host("r1", "a", HostState.SUCCEEDED, Progress())


def test_stalled_hosts_are_in_flight_quiet_and_unheld(store: Store) -> None:
    store.create_rollout(spec("r1"))
    store.save_host("r1", "a", HostState.DRAINING, Progress())
    token = store.new_token("r1", "a")
    assert store.claim_host("r1", "a", token, "w1/1", 60) == "claimed"
    time.sleep(0.05)
    assert store.stalled_hosts("r1", quiet_for=0.01) == []  # held by a live owner
    assert store.stalled_hosts("r1", quiet_for=0.01, alive=lambda _o: False) == ["a"]
    store.release_host("r1", "a", "w1/1")
    assert store.stalled_hosts("r1", quiet_for=0.01) == ["a"]
    assert store.stalled_hosts("r1", quiet_for=60) == []  # recent progress


def test_a_pending_host_whose_first_tick_was_lost_is_found_and_new_tokens_count_as_progress(
    store: Store,
) -> None:
    store.create_rollout(spec("r1"))
    assert store.stalled_hosts("r1", quiet_for=0) == []  # never started: not stalled, just pending
    store.new_token("r1", "a")  # the batch started it, then its message was lost
    assert store.stalled_hosts("r1", quiet_for=0) == ["a"]  # an operator's resume finds it at once
    assert store.stalled_hosts("r1", quiet_for=30) == []  # the reconciler gives it time: just scheduled
    store.save_host("r1", "b", HostState.DRAINING, Progress())
    time.sleep(0.05)
    assert "b" in store.stalled_hosts("r1", quiet_for=0.01)
    store.new_token("r1", "b")  # a tick was just sent: progress, not a stall
    assert "b" not in store.stalled_hosts("r1", quiet_for=0.01)
