"""The SQLite store under what a user's machine does to it: several processes writing at once (the CLI,
an operator's `pause`, the metrics server, workers), a full disk and a read-only filesystem under it.

Contention is real processes on one file; the disk is a tmpfs of a few hundred kilobytes, mounted for
the test (root only) and filled or remounted read-only while the store is open.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import StoreUnavailable
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.db import Store
from tests.integration.test_store import spec

pytestmark = pytest.mark.integration

HOSTS = tuple(f"h{i}" for i in range(6))
ROUNDS = 150


def _writer(url: str, host: str, rounds: int) -> list[str]:
    """One process's share: the writes a worker, the CLI and operator commands make, interleaved with
    reads. Returns the errors it met (a traceback's last line each)."""
    errors: list[str] = []
    store = Store(url)
    for i in range(rounds):
        try:
            current = store.host("r1", host)
            store.save_host("r1", host, current.state, Progress(detail=f"round {i}"))
            store.record_action("r1", "note", host, f"round {i}")
            store.claim_next_batch("r1", i)
            if i % 10 == 0:
                store.transition_rollout(
                    "r1",
                    RolloutState.PAUSED,
                    cause=PauseCause.OPERATOR,
                    only_from=frozenset({RolloutState.RUNNING}),
                )
                store.transition_rollout("r1", RolloutState.RUNNING, only_cause=PauseCause.OPERATOR)
            store.hosts("r1")
            store.rollouts()
        except Exception:
            errors.append(traceback.format_exc().strip().splitlines()[-1])
    store.engine.dispose()
    return errors


def test_concurrent_writers_never_see_database_is_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    store.create_rollout(spec("r1", hosts=HOSTS))
    store.transition_rollout("r1", RolloutState.RUNNING)
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(HOSTS)) as pool:
        results = pool.starmap(_writer, [(url, host, ROUNDS) for host in HOSTS], chunksize=1)
    errors = [error for result in results for error in result]
    assert errors == [], f"{len(errors)} errors, e.g. {errors[:3]}"
    assert len(store.actions("r1")) == len(HOSTS) * ROUNDS


def _race(url: str, barrier: Any, rounds: int) -> list[bool]:
    """Every process at once tries the same compare-and-set, round after round; returns its wins."""
    store = Store(url)
    wins: list[bool] = []
    for i in range(rounds):
        barrier.wait()
        if i % 2 == 0:
            wins.append(
                store.transition_rollout(
                    "r1",
                    RolloutState.PAUSED,
                    cause=PauseCause.OPERATOR,
                    only_from=frozenset({RolloutState.RUNNING}),
                )
            )
        else:
            wins.append(store.transition_rollout("r1", RolloutState.RUNNING, only_cause=PauseCause.OPERATOR))
    store.engine.dispose()
    return wins


def test_of_processes_racing_a_compare_and_set_exactly_one_wins_each_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    store.create_rollout(spec("r1"))
    store.transition_rollout("r1", RolloutState.RUNNING)
    context = multiprocessing.get_context("spawn")
    processes, rounds = 6, 40
    with context.Manager() as manager:
        barrier = manager.Barrier(processes)
        with context.Pool(processes) as pool:
            results = pool.starmap(_race, [(url, barrier, rounds)] * processes, chunksize=1)
    per_round = [sum(result[i] for result in results) for i in range(rounds)]
    assert per_round == [1] * rounds, per_round


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs of the test's own, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem under ``folder`` to the last byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_one_line_and_the_store_works_again_once_there_is_room(tiny_disk: Path) -> None:
    store = Store(f"sqlite:///{tiny_disk / 'store.db'}")
    store.create_rollout(spec("r1"))
    filler = fill(tiny_disk)
    big = Progress(detail="x" * 200_000)  # more than the WAL's free pages can absorb
    with pytest.raises(StoreUnavailable) as raised:
        for _ in range(20):
            store.save_host("r1", "a", HostState.PENDING, big)
    line = str(raised.value)
    assert "\n" not in line and "full" in line, line
    assert "store.db" in line, line  # says which store
    filler.unlink()
    store.save_host("r1", "a", HostState.PENDING, Progress(detail="after"))
    assert store.host("r1", "a").progress.detail == "after"


def test_a_read_only_filesystem_is_one_line_and_the_store_works_again_once_remounted(tiny_disk: Path) -> None:
    store = Store(f"sqlite:///{tiny_disk / 'store.db'}")
    store.create_rollout(spec("r1"))
    store.engine.dispose()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            store.save_host("r1", "a", HostState.PENDING, Progress(detail="x"))
        line = str(raised.value)
        assert "\n" not in line and "read-only" in line, line
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    store.save_host("r1", "a", HostState.PENDING, Progress(detail="after"))
    assert store.host("r1", "a").progress.detail == "after"
