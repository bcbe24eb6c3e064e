"""The audit log under several writers: processes appending at once, each with its own Store on one
database (a SQLite file; the machine's PostgreSQL), still make one linear log; and an append that
fails takes the change it records down with it."""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.app.audit import verify_store
from orchestrator.audit import signing
from orchestrator.audit.checkpoint import create_key_file
from orchestrator.audit.signing import FileCheckpointer, exported
from orchestrator.config import Settings
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store import audit
from orchestrator.store.audit import AuditLog
from orchestrator.store.db import Store
from tests.integration.test_store import spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ORIGIN = "test.example/orchestrator-audit"
WRITERS = 4
APPENDS = 50
EVERY = 10
WAIT = 30.0  # seconds any one wait may take: the barrier, a process's end


def _append(url: str, key_file: str, folder: str, rollout_id: str, barrier: Any, results: Any) -> None:
    """One writer: its own Store (and checkpointer), then APPENDS actions on its rollout, as fast as it
    can once every writer is ready."""
    try:
        checkpointer = FileCheckpointer(Path(key_file), Path(folder), ORIGIN, every=EVERY)
        store = Store(url, audit=AuditLog(checkpointer))
        barrier.wait(timeout=WAIT)
        for i in range(APPENDS):
            store.record_action(rollout_id, "note", f"writer-{rollout_id}", detail=str(i))
        store.engine.dispose()
        results.put((rollout_id, ""))
    except BaseException:
        results.put((rollout_id, traceback.format_exc()))


def _settings(tmp_path: Path, url: str, key_file: Path, folder: Path) -> Settings:
    return Settings(
        home=tmp_path,
        database_url=url,
        broker_url=None,
        audit_key=key_file,
        audit_checkpoints=folder,
        audit_origin=ORIGIN,
        audit_checkpoint_every=EVERY,
    )


def test_writers_in_four_processes_make_one_linear_log(store: Store, tmp_path: Path) -> None:
    key_file, folder = tmp_path / "signing.key", tmp_path / "checkpoints"
    verifier = create_key_file(key_file, "test-audit")  # before the writers, which would race to make it
    rollouts = [f"r{i}" for i in range(WRITERS)]
    for rollout_id in rollouts:
        store.create_rollout(spec(rollout_id, pool=f"pool-{rollout_id}"))
    with store.session() as s:
        before = audit.head(s)[0]
    assert before == WRITERS  # each creation is a record too

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_append, args=(store.url, str(key_file), str(folder), rollout_id, barrier, results)
        )
        for rollout_id in rollouts
    ]
    for process in processes:
        process.start()
    try:
        reports = dict(results.get(timeout=WAIT) for _ in processes)
        for process in processes:
            process.join(timeout=WAIT)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    assert {r: e for r, e in reports.items() if e} == {}
    assert [p.exitcode for p in processes] == [0] * WRITERS

    total = before + WRITERS * APPENDS
    with store.session() as s:
        records = list(audit.records(s))
        size = audit.head(s)[0]
    assert [r.seq for r in records] == list(range(total))  # no gap, no duplicate
    assert size == total
    appended = records[before:]
    assert len(appended) == WRITERS * APPENDS
    for rollout_id in rollouts:
        mine = [r.fields() for r in appended if r.rollout_id == rollout_id]
        assert [f["detail"] for f in mine] == [str(i) for i in range(APPENDS)]  # each writer's own order
        assert {f["actor"] for f in mine} == {f"writer-{rollout_id}"}
        assert len(store.actions(rollout_id)) == APPENDS

    # Checkpoints every EVERY records, each signed inside the append that reached its size, by
    # whichever process that was, and exported by it.
    sizes = list(range(EVERY, total + 1, EVERY))
    with store.session() as s:
        assert [size for size, _, _ in audit.stored_checkpoints(s)] == sizes
    assert [p.name for p in exported(folder)] == [f"{size:012d}.checkpoint" for size in sizes]

    verdict = verify_store(store, _settings(tmp_path, store.url, key_file, folder), [], [verifier])
    assert verdict.ok, verdict.problems
    assert verdict.records == total
    assert verdict.covered == sizes[-1]
    assert len(verdict.checkpoints) == 2 * len(sizes)


class BrokenSigner:
    """A checkpointer whose signing fails (the key on a disk that just died), at every record."""

    every = 1

    def sign(self, size: int, root: bytes) -> str:
        raise RuntimeError(f"cannot sign the checkpoint at size {size}: the key's disk failed")

    def export(self, size: int, note: str) -> str:
        raise AssertionError("nothing is exported when nothing was signed")


def _record_action(store: Store) -> None:
    store.record_action("r1", "pause", "bob", reason="a customer demo")


def _transition(store: Store) -> None:
    store.transition_rollout("r1", RolloutState.RUNNING)


def _save_host(store: Store) -> None:
    store.save_host("r1", "a", HostState.DRAINING, Progress(detail="draining"))


CHANGES = {"record_action": _record_action, "transition_rollout": _transition, "save_host": _save_host}


def _state(store: Store) -> tuple[Any, ...]:
    with store.session() as s:
        counts = tuple(
            s.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("audit_records", "audit_checkpoints", "actions")
        )
        size = audit.head(s)[0]
    rollout = store.rollout("r1")
    assert rollout is not None
    return (*counts, size, rollout.state, store.host("r1", "a").state, store.host("r1", "a").progress.detail)


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_an_append_that_fails_fails_the_change_and_writes_nothing(store: Store, change: Any) -> None:
    store.create_rollout(spec("r1"))
    before = _state(store)
    assert before[:4] == (1, 0, 0, 1)
    failing = Store(store.url, audit=AuditLog(BrokenSigner()))
    try:
        with pytest.raises(RuntimeError, match="cannot sign the checkpoint at size 2"):
            change(failing)
        assert _state(failing) == before  # no action row, no state change, no record, head unmoved
        change(store)  # the same change through a store that can sign goes in whole
        after = _state(store)
        assert after[0] == after[3] == 2
    finally:
        failing.engine.dispose()


class FullExportDisk:
    """Signs (with a throwaway key), but cannot write the checkpoint outside the store."""

    every = 1

    def __init__(self, key_file: Path) -> None:
        self.inner = FileCheckpointer(key_file, key_file.parent / "unused", ORIGIN, every=1)

    def sign(self, size: int, root: bytes) -> str:
        return self.inner.sign(size, root)

    def export(self, size: int, note: str) -> str:
        raise OSError(28, "No space left on device")


def test_an_export_that_fails_does_not_fail_the_change(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The other way round: the checkpoint is signed and in the store; only its copy is missing,
    which `audit verify` names later. A full export disk must not stop a rollout."""
    store.create_rollout(spec("r1"))
    key_file = tmp_path / "signing.key"
    verifier = create_key_file(key_file, "test-audit")
    exporting = Store(store.url, audit=AuditLog(FullExportDisk(key_file)))
    try:
        exporting.record_action("r1", "pause", "bob", reason="a customer demo")
        assert [a[1] for a in exporting.actions("r1")] == ["pause"]
        with exporting.session() as s:
            assert [(size, where) for size, _, where in audit.stored_checkpoints(s)] == [(2, "")]
        assert "audit checkpoint at size 2 not exported" in caplog.text
        folder = tmp_path / "checkpoints"
        verdict = verify_store(exporting, _settings(tmp_path, store.url, key_file, folder), [], [verifier])
        assert verdict.ok, verdict.problems
        assert verdict.covered == 2
    finally:
        exporting.engine.dispose()


def test_latest_checkpoint_keeps_the_larger_of_two_exports_racing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exports happen after the commit, outside the head's lock, so the writer of size 190 may still be
    exporting when the writer of size 200 does. The older export is held between reading
    latest.checkpoint's size and writing it: the newer one must wait for it (the folder's lock), and
    then write last."""
    key_file, folder = tmp_path / "signing.key", tmp_path / "checkpoints"
    create_key_file(key_file, "test-audit")
    older, newer = (FileCheckpointer(key_file, folder, ORIGIN, every=EVERY) for _ in range(2))
    older_read, newer_done = threading.Event(), threading.Event()
    newer_waited: list[bool] = []
    read = signing._size_in

    def size_in(path: Path) -> int:
        size = read(path)
        if threading.current_thread().name == "older":
            older_read.set()
            newer_waited.append(not newer_done.wait(timeout=0.5))
        return size

    def export_newer() -> None:
        newer.export(200, notes[200])
        newer_done.set()

    monkeypatch.setattr(signing, "_size_in", size_in)
    root = bytes(32)
    notes = {size: checkpointer.sign(size, root) for size, checkpointer in ((190, older), (200, newer))}
    slow = threading.Thread(target=older.export, args=(190, notes[190]), name="older")
    slow.start()
    assert older_read.wait(timeout=WAIT)
    fast = threading.Thread(target=export_newer, name="newer")
    fast.start()
    for thread in (slow, fast):
        thread.join(timeout=WAIT)
        assert not thread.is_alive()
    assert newer_waited == [True]
    assert (folder / "latest.checkpoint").read_text(encoding="utf-8") == notes[200]
