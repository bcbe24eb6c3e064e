"""The SQLite store under what a user's machine does to it: several processes writing at once (the CLI,
an operator's `pause`, the metrics server, workers), a full disk and a read-only filesystem under it.

Contention is real processes on one file; the disk is a tmpfs of a few megabytes, mounted for
the test (root only) and filled or remounted read-only while the store is open.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
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
    """A 16 MiB tmpfs of the test's own, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)], check=True)
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
    for i in range(40):  # a write-ahead log of some size, folded back: pages SQLite keeps and reuses
        store.save_host("r1", "a", HostState.PENDING, Progress(detail=f"{i}" * 50_000))
    with contextlib.closing(sqlite3.connect(tiny_disk / "store.db", isolation_level=None)) as raw:
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
    filler = fill(tiny_disk)
    # Every write is refused, the small ones too: none lurches through on a page SQLite still holds.
    for _ in range(20):
        with pytest.raises(StoreUnavailable) as raised:
            store.save_host("r1", "a", HostState.PENDING, Progress(detail="x"))
    line = str(raised.value)
    assert "\n" not in line and "the disk under the store is full" in line, line
    assert "store.db" in line, line  # says which store
    assert store.host("r1", "a").state is HostState.PENDING  # reads still answer
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


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A 32 MiB ext4 image on a loop device, mounted errors=remount-ro as a server's disks are."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    image, mount = tmp_path / "disk.img", tmp_path / "ext4"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True)
    device = loop.stdout.strip()
    try:
        subprocess.run(["mount", "-o", "errors=remount-ro", device, str(mount)], check=True)
        yield mount, Path(device).name
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def test_a_filesystem_the_kernel_turned_read_only_after_an_error_is_one_line(
    ext4_disk: tuple[Path, str],
) -> None:
    """What a failing disk does in the field: ext4 meets an error and turns itself read-only under the
    open store (the kernel's own trigger for it, as a real I/O error would)."""
    mount, device = ext4_disk
    trigger = Path(f"/sys/fs/ext4/{device}/trigger_fs_error")
    if not trigger.exists():
        pytest.skip(f"{trigger} is not there: this kernel cannot trigger an ext4 error")
    store = Store(f"sqlite:///{mount / 'store.db'}")
    store.create_rollout(spec("r1"))
    trigger.write_text("orchestrator test: a disk error under the store\n")
    with pytest.raises(StoreUnavailable) as raised:
        for i in range(20):  # the first write after the error may still land in the page cache
            store.save_host("r1", "a", HostState.PENDING, Progress(detail=f"{i}" * 10_000))
    line = str(raised.value)
    assert "\n" not in line and "the disk under the store fails" in line and "read-only" in line, line
    store.engine.dispose()


def history(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "history"],
        env={**os.environ, "ORCH_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_on_a_full_or_read_only_disk_is_one_line_naming_it(tiny_disk: Path) -> None:
    url = f"sqlite:///{tiny_disk / 'store.db'}"
    assert history(url).returncode == 0
    filler = fill(tiny_disk)
    full = history(url)
    assert full.returncode == 3 and full.stdout == "", full
    assert full.stderr.count("\n") == 1 and "the disk under the store is full" in full.stderr, full.stderr
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        read_only = history(url)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    if read_only.returncode == 0:  # SQLite could read without its -shm file: reads answer, as they may
        assert read_only.stderr == "" and "rollout" in read_only.stdout.lower(), read_only
        return
    assert read_only.returncode in (2, 3) and read_only.stdout == "", read_only
    assert read_only.stderr.count("\n") == 1, read_only.stderr
    assert "the filesystem under the store is read-only" in read_only.stderr, read_only.stderr
