"""The audit log against someone who can write to the store's database: a rollout's worth of records
is recorded once per back end (SQLite and the machine's PostgreSQL), then each case tampers with a
fresh copy by raw SQL (or edits an exported checkpoint file) and `verify_store` must fail and name
the record, or the range of records, that was changed. Inclusion proofs are checked end to end.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from orchestrator.app.audit import check_proof, proof, verifiers, verify_store
from orchestrator.audit.canonical import canonical_json
from orchestrator.audit.checkpoint import Checkpoint, create_key_file, load_signer, open_note, sign
from orchestrator.audit.merkle import Frontier, leaf_hash
from orchestrator.audit.signing import FileCheckpointer, exported
from orchestrator.audit.verify import Verdict
from orchestrator.config import Settings
from orchestrator.errors import RolloutRefused
from orchestrator.model.progress import Progress
from orchestrator.model.spec import ChangeRequest, Document
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.audit import AuditLog, body_of
from orchestrator.store.db import Store
from orchestrator.store.retention import prune
from tests.integration.conftest import PG
from tests.unit.fakes import host_spec, rollout_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ORIGIN = "test.example/orchestrator-audit"
EVERY = 8
HOSTS = ("web1", "web2", "web3")
RID = "R1"


# --- the log every case starts from ------------------------------------------------------------------


def record_a_rollout(store: Store) -> None:
    """What a three-host rollout writes: created, started, an operator's pause and resume, each host
    drained, snapshotted, updated (steps started and ended), checked, returned; batches moved on; the
    end (which checkpoints the log whatever its size)."""
    document = Document(path="/p/playbook.yaml", sha256="ab" * 32, text="steps: []")
    request = ChangeRequest(
        requested_by="alice",
        requested_at=1_700_000_000.0,
        change_ticket="CHG-1042",
        reason="security update of the app",
        playbook=document,
        inventory=document.model_copy(update={"path": "/p/inventory.yaml"}),
    )
    spec = rollout_spec(hosts=[host_spec(h) for h in HOSTS], request=request)
    store.create_rollout(spec)
    store.transition_rollout(RID, RolloutState.RUNNING)
    store.record_action(RID, "start", "alice", detail="from the CLI", reason="CHG-1042 window opened")
    for batch, host in enumerate(HOSTS):
        if host == "web2":
            store.record_action(RID, "pause", "bob", reason="a customer demo at 10:00")
            store.transition_rollout(RID, RolloutState.PAUSED, cause=PauseCause.OPERATOR, reason="bob: demo")
            store.record_action(RID, "resume", "bob", reason="the demo is over")
            store.transition_rollout(RID, RolloutState.RUNNING, only_cause=PauseCause.OPERATOR)
        assert store.claim_start(RID, host, HostState.DRAINING, lambda out: not out)
        for state in (HostState.OUT_OF_POOL, HostState.SNAPSHOTTING):
            store.save_host(RID, host, state, Progress())
        step = store.step_started(RID, host, "snapshot", "orch-R1")
        store.step_ended(step, "ok", work=0.5)
        store.save_host(RID, host, HostState.UPDATING, Progress())
        command = "/opt/app/bin/install /tmp/a"
        step = store.step_started(RID, host, "run install", command=command)
        output = f"installed app 2.0 on {host}\n"
        store.step_ended(
            step,
            "ok",
            exit_code=0,
            output_tail=output,
            output_sha256=hashlib.sha256(output.encode()).hexdigest(),
        )
        for state in (HostState.CHECKING, HostState.RETURNING, HostState.SUCCEEDED):
            store.save_host(RID, host, state, Progress())
        if batch < len(HOSTS) - 1:
            assert store.claim_next_batch(RID, batch)
    assert store.finish_rollout(RID, RolloutState.SUCCEEDED, "every host updated")


@dataclass(frozen=True)
class Log:
    """The recorded rollout: where its database is, its key, its exported checkpoints, its records."""

    backend: str
    url: str
    key_file: Path
    folder: Path
    verifier: str
    bodies: tuple[str, ...]  # by seq
    checkpoints: tuple[int, ...]  # the sizes signed

    @property
    def size(self) -> int:
        return len(self.bodies)

    def fields(self, seq: int) -> dict[str, Any]:
        return dict(json.loads(self.bodies[seq]))

    def find(self, kind: str, **match: Any) -> int:
        """The first record of ``kind`` whose fields include ``match``."""
        for seq in range(self.size):
            fields = self.fields(seq)
            if fields["kind"] == kind and all(fields.get(k) == v for k, v in match.items()):
                return seq
        raise AssertionError(f"no {kind} record with {match}")


def _pg_url(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _pg_name(what: str) -> str:
    return f"orch_audit_{what}_{os.getpid()}_{time.time_ns() % 10**10}"


def _pg(statement: str) -> None:
    with psycopg.connect(PG, autocommit=True, connect_timeout=10) as admin:
        admin.execute(statement)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    """One recorded rollout per back end; cases work on copies of it (``tampered``)."""
    folder = tmp_path_factory.mktemp(f"log-{request.param}")
    key_file = folder / "signing.key"
    verifier = create_key_file(key_file, "test-audit")
    name = ""
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'store.db'}"
    else:
        name = _pg_name("base")
        _pg(f'CREATE DATABASE "{name}"')
        url = _pg_url(name)
    checkpointer = FileCheckpointer(key_file, folder / "checkpoints", ORIGIN, every=EVERY)
    store = Store(url, audit=AuditLog(checkpointer))
    try:
        record_a_rollout(store)
        with store.engine.connect() as c:
            bodies = tuple(c.execute(text("SELECT body FROM audit_records ORDER BY seq")).scalars())
            sizes = tuple(c.execute(text("SELECT size FROM audit_checkpoints ORDER BY size")).scalars())
    finally:
        store.engine.dispose()  # a PostgreSQL template must have no session open on it
    try:
        yield Log(request.param, url, key_file, folder / "checkpoints", verifier, bodies, sizes)
    finally:
        if name:
            _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Copy:
    """A copy of the log's database and of its exported checkpoints, for one case to ruin."""

    log: Log
    url: str
    folder: Path
    settings: Settings
    raw: Engine  # a plain engine: none of the store's redaction, audit or checks

    def sql(self, statement: str, **params: Any) -> None:
        with self.raw.begin() as c:
            c.execute(text(statement), params)

    def query(self, statement: str, **params: Any) -> list[Any]:
        with self.raw.connect() as c:
            return list(c.execute(text(statement), params))

    def store(self) -> Store:
        return Store(self.url)

    def verify(self, keys: list[str] | None = None) -> Verdict:
        store = self.store()
        try:
            return verify_store(store, self.settings, [], keys if keys is not None else [self.log.verifier])
        finally:
            store.engine.dispose()

    def file(self, size: int) -> Path:
        return self.folder / f"{size:012d}.checkpoint"


@pytest.fixture
def tampered(log: Log, tmp_path: Path) -> Iterator[Copy]:
    name = ""
    if log.backend == "sqlite":
        source, copy = (
            sqlite3.connect(log.url.removeprefix("sqlite:///")),
            sqlite3.connect(tmp_path / "copy.db"),
        )
        with source, copy:
            source.backup(copy)  # the WAL included, which a plain file copy could miss
        source.close()
        copy.close()
        url = f"sqlite:///{tmp_path / 'copy.db'}"
    else:
        name = _pg_name("case")
        _pg(f'CREATE DATABASE "{name}" TEMPLATE "{log.url.rsplit("/", 1)[1]}"')
        url = _pg_url(name)
    folder = tmp_path / "checkpoints"
    shutil.copytree(log.folder, folder)
    settings = Settings(
        home=tmp_path,
        database_url=url,
        broker_url=None,
        audit_key=log.key_file,
        audit_checkpoints=folder,
        audit_origin=ORIGIN,
        audit_checkpoint_every=EVERY,
    )
    raw = create_engine(url)
    try:
        yield Copy(log, url, folder, settings, raw)
    finally:
        raw.dispose()
        if name:
            _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- what an attacker with the database's password does -------------------------------------------------


def edit_body(copy: Copy, seq: int, old: str, new: str) -> str:
    (body,) = copy.query("SELECT body FROM audit_records WHERE seq = :seq", seq=seq)[0]
    assert old in body, body
    changed = str(body).replace(old, new, 1)
    copy.sql("UPDATE audit_records SET body = :body WHERE seq = :seq", body=changed, seq=seq)
    return changed


def renumber(copy: Copy, start: int, by: int) -> None:
    """Move every record from ``start`` on by ``by`` places. Two statements: the primary key is checked
    row by row, so a single ``seq = seq + 1`` collides with the next row on the way."""
    copy.sql("UPDATE audit_records SET seq = -seq - 1000 WHERE seq >= :start", start=start)
    copy.sql("UPDATE audit_records SET seq = -seq - 1000 + :by WHERE seq < 0", by=by)


def rehash(copy: Copy, *, renumber_bodies: bool = False) -> None:
    """Recompute every leaf, every root and the head from the bodies as they now are, as someone who
    read this project's source would: the log is then consistent with itself. With
    ``renumber_bodies``, each body's own ``seq`` is first set to its place."""
    rows = copy.query("SELECT seq, body FROM audit_records ORDER BY seq")
    frontier = Frontier()
    for seq, body in rows:
        if renumber_bodies:
            document = json.loads(body)
            document["seq"] = seq
            body = canonical_json(document).decode()
        leaf = leaf_hash(body.encode())
        frontier.append(leaf)
        copy.sql(
            "UPDATE audit_records SET body = :body, leaf = :leaf, root = :root WHERE seq = :seq",
            body=body,
            leaf=leaf.hex(),
            root=frontier.root().hex(),
            seq=seq,
        )
    fix_head(copy, frontier)


def fix_head(copy: Copy, frontier: Frontier) -> None:
    copy.sql(
        "UPDATE audit_head SET size = :size, frontier_json = :frontier WHERE id = 1",
        size=frontier.size,
        frontier=json.dumps(frontier.to_json()),
    )


def frontier_of(copy: Copy, size: int) -> Frontier:
    frontier = Frontier()
    for (leaf,) in copy.query("SELECT leaf FROM audit_records WHERE seq < :size ORDER BY seq", size=size):
        frontier.append(bytes.fromhex(leaf))
    return frontier


def web2_updating(log: Log) -> int:
    return log.find("host.state", host="web2", to="updating")


@dataclass(frozen=True)
class Expect:
    first_bad: int | None
    pattern: str  # a regex one of the problems must match


def edit_host_not_leaf(copy: Copy) -> Expect:
    k = web2_updating(copy.log)
    edit_body(copy, k, '"host":"web2"', '"host":"web9"')
    return Expect(k, rf"^record {k} \(host\.state\) was altered: its content no longer matches its hash$")


def edit_reason_not_leaf(copy: Copy) -> Expect:
    k = copy.log.find("action", action="pause")
    edit_body(copy, k, "a customer demo at 10:00", "the load balancer was flapping")
    return Expect(k, rf"^record {k} \(action\) was altered")


def edit_host_and_leaf_not_root(copy: Copy) -> Expect:
    k = web2_updating(copy.log)
    body = edit_body(copy, k, '"host":"web2"', '"host":"web9"')
    leaf = hashlib.sha256(b"\x00" + body.encode()).hexdigest()
    copy.sql("UPDATE audit_records SET leaf = :leaf WHERE seq = :seq", leaf=leaf, seq=k)
    return Expect(k, rf"^record {k} \(host\.state\): the tree root stored with it is not the root")


def delete_one(copy: Copy) -> Expect:
    k = copy.log.find("step.started", host="web2", step="run install")
    copy.sql("DELETE FROM audit_records WHERE seq = :seq", seq=k)
    return Expect(k, rf"^record {k} is missing: the log jumps from {k - 1} to {k + 1} \(removed\)$")


def delete_one_and_renumber(copy: Copy) -> Expect:
    k = copy.log.find("step.started", host="web2", step="run install")
    copy.sql("DELETE FROM audit_records WHERE seq = :seq", seq=k)
    renumber(copy, k + 1, -1)
    fix_head(copy, frontier_of(copy, copy.log.size - 1))
    return Expect(k, rf"^record {k} holds the content of record {k + 1}: records were moved")


def swap_two(copy: Copy) -> Expect:
    i = copy.log.find("action", action="pause")
    j = copy.log.find("action", action="resume")
    rows = dict(
        (seq, (body, leaf, root))
        for seq, body, leaf, root in copy.query(
            "SELECT seq, body, leaf, root FROM audit_records WHERE seq IN (:i, :j)", i=i, j=j
        )
    )
    for here, there in ((i, j), (j, i)):
        body, leaf, root = rows[there]
        copy.sql(
            "UPDATE audit_records SET body = :body, leaf = :leaf, root = :root WHERE seq = :seq",
            body=body,
            leaf=leaf,
            root=root,
            seq=here,
        )
    return Expect(
        i, rf"^record {i} holds the content of record {j}: records were moved, swapped or inserted$"
    )


def _forged_approval(copy: Copy, k: int) -> tuple[str, str, str]:
    """A well-formed record at place ``k``: its own seq, a true leaf, the true root of 0..k."""
    body = body_of(k, 1_700_000_500.0, "action", RID, {"action": "approve", "actor": "mallory", "detail": ""})
    leaf = leaf_hash(body.encode())
    frontier = frontier_of(copy, k)
    frontier.append(leaf)
    return body, leaf.hex(), frontier.root().hex()


def insert_one(copy: Copy) -> Expect:
    k = copy.log.find("batch.next", batch=2)
    renumber(copy, k, +1)
    body, leaf, root = _forged_approval(copy, k)
    copy.sql(
        "INSERT INTO audit_records (seq, at, kind, rollout_id, body, leaf, root) "
        "VALUES (:seq, 1700000500.0, 'action', :rid, :body, :leaf, :root)",
        seq=k,
        rid=RID,
        body=body,
        leaf=leaf,
        root=root,
    )
    fix_head(copy, frontier_of(copy, copy.log.size + 1))
    # The inserted record is consistent with what comes before it; the first one out of place is
    # the record it pushed along, which still says it is record k.
    return Expect(
        k + 1, rf"^record {k + 1} holds the content of record {k}: records were moved, swapped or inserted$"
    )


def truncate_tail(copy: Copy) -> Expect:
    keep = copy.log.size - 5
    copy.sql("DELETE FROM audit_records WHERE seq >= :keep", keep=keep)
    fix_head(copy, frontier_of(copy, keep))
    copy.sql("DELETE FROM audit_checkpoints WHERE size > :keep", keep=keep)  # the store's copies go too
    # The first checkpoint past the cut: the exported file outside the store still says so.
    last = min(size for size in copy.log.checkpoints if size > keep)
    assert keep % EVERY and last < copy.log.size  # the cut falls between two checkpoints, past one
    return Expect(
        keep,
        rf"^the log has {keep} records but checkpoint {re.escape(str(copy.file(last)))} was signed at size "
        rf"{last}: records {keep} to {last - 1} are gone \(the tail was truncated\)$",
    )


def _rewritten_range(k: int) -> tuple[int, int]:
    start = k // EVERY * EVERY
    return start, start + EVERY - 1


def rewrite_early(copy: Copy) -> Expect:
    k = copy.log.find("action", action="start")
    assert k < EVERY
    edit_body(copy, k, '"actor":"alice"', '"actor":"mallory"')
    rehash(copy)
    copy.sql("DELETE FROM audit_checkpoints")
    start, end = _rewritten_range(k)
    path = re.escape(str(copy.file(end + 1)))
    return Expect(
        start,
        rf"^the log's first {end + 1} records are not the ones checkpoint {path} "
        rf"signed: the log was rewritten between record {start} and record {end}$",
    )


def rewrite_middle(copy: Copy) -> Expect:
    k = web2_updating(copy.log)
    assert k >= 2 * EVERY
    edit_body(copy, k, '"host":"web2"', '"host":"web9"')
    rehash(copy)
    copy.sql("DELETE FROM audit_checkpoints")
    start, end = _rewritten_range(k)
    return Expect(start, rf"the log was rewritten between record {start} and record {end}$")


def insert_renumber_and_rehash(copy: Copy) -> Expect:
    """The thorough insert: every later body renumbered, everything re-hashed, stored checkpoints gone."""
    k = copy.log.find("batch.next", batch=2)
    renumber(copy, k, +1)
    body, leaf, root = _forged_approval(copy, k)
    copy.sql(
        "INSERT INTO audit_records (seq, at, kind, rollout_id, body, leaf, root) "
        "VALUES (:seq, 1700000500.0, 'action', :rid, :body, :leaf, :root)",
        seq=k,
        rid=RID,
        body=body,
        leaf=leaf,
        root=root,
    )
    rehash(copy, renumber_bodies=True)
    copy.sql("DELETE FROM audit_checkpoints")
    start, end = _rewritten_range(k)
    return Expect(start, rf"the log was rewritten between record {start} and record {end}$")


def delete_renumber_and_rehash(copy: Copy) -> Expect:
    k = copy.log.find("step.started", host="web2", step="run install")
    copy.sql("DELETE FROM audit_records WHERE seq = :seq", seq=k)
    renumber(copy, k + 1, -1)
    rehash(copy, renumber_bodies=True)
    copy.sql("DELETE FROM audit_checkpoints")
    start, end = _rewritten_range(k)
    return Expect(start, rf"the log was rewritten between record {start} and record {end}$")


def _other_key(copy: Copy, name: str = "mallory") -> Path:
    key = copy.settings.home / f"{name}.key"
    create_key_file(key, name)
    return key


def forged_checkpoints(copy: Copy) -> Expect:
    """The log rewritten, and every checkpoint (stored and exported) replaced by one the attacker
    signed over the new roots with a key of their own."""
    rewrite_early(copy)
    mallory = load_signer(_other_key(copy))
    for path in exported(copy.folder):
        path.unlink()
    for size in copy.log.checkpoints:
        root = bytes.fromhex(
            copy.query("SELECT root FROM audit_records WHERE seq = :seq", seq=size - 1)[0][0]
        )
        note = sign(Checkpoint(ORIGIN, size, root), mallory)
        copy.sql(
            "INSERT INTO audit_checkpoints (size, at, note, exported) VALUES (:s, 0, :n, '')", s=size, n=note
        )
        copy.file(size).write_text(note, encoding="utf-8")
    return Expect(None, r"^checkpoint \S+: note has no signature from a known key \(unknown keys: mallory\+")


def forged_under_the_real_keys_name(copy: Copy) -> Expect:
    """As above, but the forged signature lines claim the real key's name and key hash."""
    rewrite_early(copy)
    real = load_signer(copy.log.key_file)
    mallory = load_signer(_other_key(copy, real.name + "x"))
    impostor = type(real)(real.name, real.key_hash, mallory.private_key)
    for size in copy.log.checkpoints:
        root = bytes.fromhex(
            copy.query("SELECT root FROM audit_records WHERE seq = :seq", seq=size - 1)[0][0]
        )
        copy.file(size).write_text(sign(Checkpoint(ORIGIN, size, root), impostor), encoding="utf-8")
    return Expect(None, rf"^checkpoint \S+: invalid signature for key {real.name}\+{real.key_hash:08x}$")


def edit_exported_root(copy: Copy) -> Expect:
    """The file of size 16 given the root the log had at size 20 (it only has to look plausible)."""
    path = copy.file(2 * EVERY)
    (other,) = copy.query("SELECT root FROM audit_records WHERE seq = 19")[0]
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[2] = base64.b64encode(bytes.fromhex(other)).decode()
    path.write_text("\n".join(lines), encoding="utf-8")
    return Expect(None, rf"^checkpoint {re.escape(str(path))}: invalid signature for key ")


def edit_exported_size(copy: Copy) -> Expect:
    path = copy.file(2 * EVERY)
    note = path.read_text(encoding="utf-8")
    path.write_text(note.replace(f"\n{2 * EVERY}\n", f"\n{2 * EVERY + 1}\n", 1), encoding="utf-8")
    return Expect(None, rf"^checkpoint {re.escape(str(path))}: invalid signature for key ")


def add_forged_file(copy: Copy) -> Expect:
    """The log untouched; a checkpoint file signed by another key dropped next to the real ones."""
    mallory = load_signer(_other_key(copy))
    (root,) = copy.query("SELECT root FROM audit_records WHERE seq = 3")[0]
    path = copy.file(4)
    path.write_text(sign(Checkpoint(ORIGIN, 4, bytes.fromhex(root)), mallory), encoding="utf-8")
    return Expect(None, rf"^checkpoint {re.escape(str(path))}: note has no signature from a known key")


def edit_time_column(copy: Copy) -> Expect:
    """The ``at`` column moved back a day: `audit export --since` (which selects on it) then leaves
    the record out, so it must not pass for the time the record's text and hash say."""
    k = copy.log.find("action", action="pause")
    copy.sql("UPDATE audit_records SET at = at - 86400 WHERE seq = :seq", seq=k)
    return Expect(k, rf"\brecord {k}\b")


def blank_a_body(copy: Copy) -> Expect:
    """A record emptied as a prune would, without the prune record that must name it."""
    k = copy.log.find("action", action="pause")
    copy.sql("UPDATE audit_records SET body = '' WHERE seq = :seq", seq=k)
    return Expect(k, rf"^record {k} was emptied, and no prune record names it$")


def alter_the_head(copy: Copy) -> Expect:
    """The head row's frontier replaced: the next honest append would be built on a false tree."""
    copy.sql("""UPDATE audit_head SET frontier_json = '{"size": 0, "hashes": []}' WHERE id = 1""")
    return Expect(None, r"^the log's head row was altered")


TAMPERINGS: dict[str, Callable[[Copy], Expect]] = {
    "empty a record's body as if pruned": blank_a_body,
    "alter the head's frontier": alter_the_head,
    "edit a record's host, leaf untouched": edit_host_not_leaf,
    "edit a record's reason, leaf untouched": edit_reason_not_leaf,
    "edit a record's host and re-hash its leaf, not its root": edit_host_and_leaf_not_root,
    "delete a record": delete_one,
    "delete a record and renumber the rest": delete_one_and_renumber,
    "swap two records with their leaves and roots": swap_two,
    "insert a record, renumbering the rest": insert_one,
    "truncate the tail and fix the head": truncate_tail,
    "rewrite an early record and re-hash the whole log": rewrite_early,
    "rewrite a middle record and re-hash the whole log": rewrite_middle,
    "insert a record, renumber and re-hash the whole log": insert_renumber_and_rehash,
    "delete a record, renumber and re-hash the whole log": delete_renumber_and_rehash,
    "rewrite the log and forge every checkpoint with another key": forged_checkpoints,
    "rewrite the log and forge checkpoints under the real key's name": forged_under_the_real_keys_name,
    "edit an exported checkpoint's root by hand": edit_exported_root,
    "edit an exported checkpoint's size by hand": edit_exported_size,
    "add a checkpoint file signed by another key": add_forged_file,
}


# --- the tests ------------------------------------------------------------------------------------------


def test_the_recorded_rollout_has_about_forty_records_and_several_checkpoints(log: Log) -> None:
    assert 40 <= log.size <= 50
    assert log.size % EVERY  # the rollout's end adds a checkpoint of its own
    assert log.checkpoints == (*range(EVERY, log.size, EVERY), log.size)
    files = [p.name for p in exported(log.folder)]
    assert files == [f"{size:012d}.checkpoint" for size in log.checkpoints]
    latest = open_note((log.folder / "latest.checkpoint").read_text(encoding="utf-8"), [log.verifier])
    assert latest.size == log.size
    kinds = {log.fields(seq)["kind"] for seq in range(log.size)}
    assert kinds == {
        "rollout.created",
        "rollout.state",
        "action",
        "host.state",
        "step.started",
        "step.ended",
        "batch.next",
    }


def test_an_untouched_copy_verifies(tampered: Copy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative control: the harness itself (copying, opening, verifying) breaks nothing."""
    verdict = tampered.verify()
    assert verdict.ok, verdict.problems
    assert verdict.first_bad is None
    assert verdict.records == tampered.log.size
    assert verdict.covered == tampered.log.size
    assert len(verdict.checkpoints) == 2 * len(tampered.log.checkpoints)  # the store's and the files'
    store = tampered.store()
    try:
        with store.engine.connect() as c:
            where: dict[int, str] = dict(
                c.execute(text("SELECT size, exported FROM audit_checkpoints")).all()
            )
    finally:
        store.engine.dispose()
    assert where == {
        size: str(tampered.log.folder / f"{size:012d}.checkpoint") for size in tampered.log.checkpoints
    }
    monkeypatch.delenv("ORCH_AUDIT_VERIFIER", raising=False)
    assert verifiers(tampered.settings, []) == [tampered.log.verifier]  # the local key by default


CASES = [
    *(pytest.param(tamper, id=name) for name, tamper in TAMPERINGS.items()),
    pytest.param(edit_time_column, id="edit a record's time column"),
]


@pytest.mark.parametrize("tamper", CASES)
def test_tampering_fails_verification_naming_the_record(
    tampered: Copy, tamper: Callable[[Copy], Expect]
) -> None:
    expect = tamper(tampered)
    verdict = tampered.verify()
    assert not verdict.ok
    assert verdict.first_bad == expect.first_bad, verdict.problems
    assert any(re.search(expect.pattern, problem) for problem in verdict.problems), (
        expect.pattern,
        verdict.problems,
    )
    if expect.first_bad is not None:
        number = re.compile(rf"\brecords? {expect.first_bad}\b")
        assert any(number.search(problem) for problem in verdict.problems), verdict.problems


def test_a_rewritten_log_passes_without_the_exported_checkpoints_and_fails_with_them(tampered: Copy) -> None:
    """Why checkpoints are exported: a log re-hashed whole, with the store's checkpoints deleted, is
    consistent with itself; only the copies outside the store show it was rewritten."""
    rewrite_early(tampered)
    shutil.move(tampered.folder, tampered.settings.home / "elsewhere")
    assert tampered.verify().ok
    shutil.move(tampered.settings.home / "elsewhere", tampered.folder)
    assert not tampered.verify().ok


def test_a_checkpoint_is_refused_without_the_key_that_signed_it(tampered: Copy) -> None:
    other = create_key_file(tampered.settings.home / "other.key", "other")
    verdict = tampered.verify([other])
    assert not verdict.ok
    assert verdict.checkpoints == []
    assert len(verdict.problems) == 2 * len(tampered.log.checkpoints)
    assert all("no signature from a known key" in p for p in verdict.problems)


# --- inclusion proofs -----------------------------------------------------------------------------------


PROVED = (0, EVERY - 1, EVERY, 21)


def test_a_proof_of_each_record_checks_out_against_its_checkpoint(tampered: Copy) -> None:
    store = tampered.store()
    try:
        for seq in (*PROVED, tampered.log.size - 1):
            document = proof(store, seq, None)
            assert document["body"] == tampered.log.bodies[seq]
            covering = min(size for size in tampered.log.checkpoints if size > seq)
            assert document["tree_size"] == covering
            said = check_proof(json.loads(json.dumps(document)), [tampered.log.verifier], None)
            assert f"record {seq} is in the log {ORIGIN} of {covering} records" in said
        # against a later checkpoint, given by hand, too
        later = tampered.file(tampered.log.size).read_text(encoding="utf-8")
        document = proof(store, 3, later)
        assert document["tree_size"] == tampered.log.size
        check_proof(document, [tampered.log.verifier], None)
    finally:
        store.engine.dispose()


def _flip(hex_text: str) -> str:
    return ("0" if hex_text[0] != "0" else "1") + hex_text[1:]


def _other_checkpoint(copy: Copy, document: dict[str, Any]) -> str | None:
    size = next(s for s in copy.log.checkpoints if s != document["tree_size"])
    return copy.file(size).read_text(encoding="utf-8")


def _with_other_checkpoint_and_size(copy: Copy, document: dict[str, Any]) -> str | None:
    size = next(s for s in copy.log.checkpoints if s > document["tree_size"])
    document["checkpoint"] = copy.file(size).read_text(encoding="utf-8")
    document["tree_size"] = size
    return None


def _forged_checkpoint(copy: Copy, document: dict[str, Any]) -> str | None:
    mallory = load_signer(_other_key(copy))
    signed = open_note(document["checkpoint"], [copy.log.verifier])
    document["checkpoint"] = sign(Checkpoint(ORIGIN, signed.size, signed.root), mallory)
    return None


def _edited_checkpoint(copy: Copy, document: dict[str, Any]) -> str | None:
    lines = document["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    document["checkpoint"] = "\n".join(lines)
    return None


def _body(copy: Copy, document: dict[str, Any]) -> str | None:
    document["body"] = document["body"].replace('"actor":"bob"', '"actor":"eve"')
    return None


def _body_and_leaf(copy: Copy, document: dict[str, Any]) -> str | None:
    _body(copy, document)
    document["leaf"] = leaf_hash(document["body"].encode()).hex()
    return None


def _proof_hash(copy: Copy, document: dict[str, Any]) -> str | None:
    document["proof"][1] = _flip(document["proof"][1])
    return None


def _proof_shortened(copy: Copy, document: dict[str, Any]) -> str | None:
    document["proof"].pop()
    return None


def _record_number(copy: Copy, document: dict[str, Any]) -> str | None:
    document["record"] += 1
    return None


REFUSALS: dict[str, tuple[Callable[[Copy, dict[str, Any]], str | None], str]] = {
    "the body changed": (_body, "the record's text does not hash to the proof's leaf"),
    "the body and its leaf changed": (_body_and_leaf, "is not in the tree the checkpoint signed"),
    "a proof hash changed": (_proof_hash, "is not in the tree the checkpoint signed"),
    "a proof hash left out": (_proof_shortened, "is not in the tree the checkpoint signed"),
    "the record number changed": (_record_number, "is not in the tree the checkpoint signed"),
    "another genuine checkpoint given": (_other_checkpoint, "the proof is for a tree of"),
    "another checkpoint and its size put in the proof": (
        _with_other_checkpoint_and_size,
        "is not in the tree the checkpoint signed",
    ),
    "the checkpoint signed by another key": (_forged_checkpoint, "the checkpoint does not verify"),
    "the checkpoint edited": (_edited_checkpoint, "the checkpoint does not verify"),
}


@pytest.mark.parametrize("change", list(REFUSALS.values()), ids=list(REFUSALS))
def test_a_changed_proof_is_refused(
    tampered: Copy, change: tuple[Callable[[Copy, dict[str, Any]], str | None], str]
) -> None:
    mutate, message = change
    seq = tampered.log.find("action", action="pause")  # bob's: the body has an actor to change
    store = tampered.store()
    try:
        document = proof(store, seq, None)
    finally:
        store.engine.dispose()
    assert len(document["proof"]) >= 2
    check_proof(document, [tampered.log.verifier], None)
    checkpoint = mutate(tampered, document)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_proof(document, [tampered.log.verifier], checkpoint)


# --- the command line, once it exists ------------------------------------------------------------------


def _cli() -> list[str]:
    return [str(Path(sys.executable).with_name("orchestrator"))]


@functools.cache
def _cli_has_audit() -> bool:
    try:
        done = subprocess.run([*_cli(), "audit", "--help"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_audit_verify_on_the_command_line_exits_0_then_1_naming_the_record(tampered: Copy) -> None:
    if not _cli_has_audit():
        pytest.skip("`orchestrator audit` is not there yet")
    env = {
        **os.environ,
        "ORCH_HOME": str(tampered.settings.home),
        "ORCH_DATABASE_URL": tampered.url,
        "ORCH_AUDIT_KEY": str(tampered.log.key_file),
        "ORCH_AUDIT_CHECKPOINTS": str(tampered.folder),
        "ORCH_AUDIT_ORIGIN": ORIGIN,
    }
    env.pop("ORCH_AUDIT_VERIFIER", None)
    good = subprocess.run([*_cli(), "audit", "verify"], env=env, capture_output=True, text=True, timeout=30)
    assert good.returncode == 0, good.stdout + good.stderr
    expect = edit_host_not_leaf(tampered)
    bad = subprocess.run([*_cli(), "audit", "verify"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"record {expect.first_bad}" in bad.stdout + bad.stderr


# --- retention ---------------------------------------------------------------------------------------


def test_a_prune_empties_covered_records_records_itself_and_the_log_still_verifies(tampered: Copy) -> None:
    store = Store(
        tampered.url, audit=AuditLog(FileCheckpointer(tampered.log.key_file, tampered.folder, ORIGIN))
    )
    try:
        done = prune(store, time.time() + 60, "carol", "retention: 10 years passed")
        assert store.rollout(RID) is None and store.steps(RID) == [] and store.action_log(RID) == []
    finally:
        store.engine.dispose()
    assert done.rollouts == [RID] and done.records == [[0, tampered.log.size - 1]]
    verdict = tampered.verify()
    assert verdict.ok, verdict.problems
    assert verdict.pruned == tampered.log.size and verdict.records == tampered.log.size + 1
    (last,) = tampered.query("SELECT body FROM audit_records WHERE seq = :n", n=tampered.log.size)
    fields = json.loads(last[0])
    assert (fields["kind"], fields["by"], fields["reason"]) == (
        "audit.pruned",
        "carol",
        "retention: 10 years passed",
    )


def test_a_prune_refuses_records_no_exported_checkpoint_covers(tampered: Copy) -> None:
    tampered.sql("UPDATE audit_checkpoints SET exported = '' WHERE size > 32")
    store = Store(tampered.url)
    try:
        with pytest.raises(RolloutRefused, match=r"record 32 and \d+ more are not covered"):
            prune(store, time.time() + 60, "carol", "retention")
        assert store.rollout(RID) is not None
    finally:
        store.engine.dispose()
    assert tampered.query("SELECT count(*) FROM audit_records WHERE body = ''") == [(0,)]
    assert tampered.verify().ok


def test_emptying_a_record_a_prune_did_not_name_fails_verification(tampered: Copy) -> None:
    tampered.sql("UPDATE audit_checkpoints SET exported = '' WHERE size > 32")
    tampered.sql("UPDATE audit_records SET body = '' WHERE seq = 35")
    verdict = tampered.verify()
    assert not verdict.ok and verdict.first_bad == 35, verdict.problems
