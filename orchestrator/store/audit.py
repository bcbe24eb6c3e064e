"""The audit log inside the store: every change the store makes appends a record, in the same
transaction as the change, so a change is never unrecorded and a failed append fails the change.

A record is canonical JSON (orchestrator.audit.canonical) and a leaf of an RFC 6962 Merkle tree. The
one head row holds the tree's size and frontier; taking it FOR UPDATE as the transaction's last lock
keeps the appends of several workers one linear log (SQLite's BEGIN IMMEDIATE already serializes) and
cannot deadlock with the row locks taken before it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.audit.canonical import MAX_EXACT_INT, canonical_json
from orchestrator.audit.merkle import Frontier, leaf_hash
from orchestrator.audit.verify import StoredRecord
from orchestrator.redact import redact
from orchestrator.store.schema import AuditCheckpointRow, AuditHeadRow, AuditRecordRow

log = logging.getLogger(__name__)

HEAD = 1  # the head row's id


class Checkpointer(Protocol):
    """Signs the tree's root at a size and keeps a copy outside the store (audit.signing).
    ``every``: also checkpoint each time the log reaches a multiple of this many records."""

    every: int

    def sign(self, size: int, root: bytes) -> str: ...

    def export(self, size: int, note: str) -> str:
        """Write the signed note outside the store; returns where."""


def _masked(value: Any) -> Any:
    """Secrets masked, and what canonical JSON cannot carry made into what it can: a server's answer
    (an output line with a lone surrogate, a huge number) must never make an append, and so the
    change it records, fail."""
    if isinstance(value, str):
        return redact(value).encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_EXACT_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def body_of(seq: int, at: float, kind: str, rollout_id: str | None, fields: dict[str, Any]) -> str:
    """The record's text, secrets masked *before* it is hashed: the store's write-time redaction then
    finds nothing left to change, so the stored text is exactly what the leaf hash covers."""
    document = {"seq": seq, "at": at, "kind": kind, "rollout": rollout_id, **_masked(fields)}
    return redact(canonical_json(document).decode())


class AuditLog:
    """Appends within the caller's transaction; checkpoints are exported once that transaction has
    committed (a copy of a checkpoint whose records were rolled back would be a false alarm)."""

    def __init__(self, checkpointer: Checkpointer | None = None) -> None:
        self.checkpointer = checkpointer
        self._pending = threading.local()

    def append(self, s: Session, at: float, kind: str, rollout_id: str | None, fields: dict[str, Any]) -> int:
        head, frontier = self._head(s)
        seq = head.size
        body = body_of(seq, at, kind, rollout_id, fields)
        leaf = leaf_hash(body.encode())
        frontier.append(leaf)
        root = frontier.root()
        s.add(
            AuditRecordRow(
                seq=seq, at=at, kind=kind, rollout_id=rollout_id, body=body, leaf=leaf.hex(), root=root.hex()
            )
        )
        head.size = seq + 1
        head.frontier_json = json.dumps(frontier.to_json())
        if self.checkpointer and head.size % max(1, self.checkpointer.every) == 0:
            self.checkpoint(s, at, head.size, root)
        return seq

    def _head(self, s: Session) -> tuple[AuditHeadRow, Frontier]:
        """The head row, locked, and its frontier, read once per transaction (the session keeps
        them): a transaction of many appends (a batch skipped, a bulk import) locks and reads the
        head once instead of once per record."""
        held = s.info.get("audit_head")
        if held is not None:
            return held  # type: ignore[no-any-return]
        head = s.get(AuditHeadRow, HEAD, with_for_update=True)
        if head is None:  # created by the migration; only a hand-edited database lacks it
            head = AuditHeadRow(id=HEAD, size=0, frontier_json="")
            s.add(head)
        s.info["audit_head"] = held = (head, _frontier(head.frontier_json))
        return held

    def checkpoint_now(self, s: Session, at: float) -> int | None:
        """Checkpoint the log as it is (the end of a rollout); None without a signer or when the
        latest checkpoint already covers it."""
        if self.checkpointer is None:
            return None
        head, frontier = self._head(s)
        if head.size == 0 or s.get(AuditCheckpointRow, head.size) is not None:
            return None
        self.checkpoint(s, at, head.size, frontier.root())
        return head.size

    def checkpoint(self, s: Session, at: float, size: int, root: bytes) -> None:
        assert self.checkpointer is not None
        note = self.checkpointer.sign(size, root)
        s.add(AuditCheckpointRow(size=size, at=at, note=note, exported=""))
        self._later().append((size, note))

    def _later(self) -> list[tuple[int, str]]:
        if not hasattr(self._pending, "items"):
            self._pending.items = []
        items: list[tuple[int, str]] = self._pending.items
        return items

    def committed(self, mark: Callable[[int, str], None]) -> None:
        """After a commit: export the checkpoints it holds, and record where (``mark``)."""
        items, self._pending.items = self._later(), []
        if self.checkpointer is None:
            return
        for size, note in items:
            try:
                where = self.checkpointer.export(size, note)
            except OSError as exc:
                # The checkpoint is signed and in the store; `audit verify` names the ones never
                # exported. A full export disk must not stop a rollout half-way through a host.
                log.error("audit checkpoint at size %d not exported: %s", size, exc)
                continue
            log.info("audit checkpoint: size %d exported to %s", size, where)
            mark(size, where)

    def rolled_back(self) -> None:
        self._pending.items = []


def _frontier(text: str) -> Frontier:
    return Frontier.from_json(json.loads(text)) if text else Frontier()


def records(s: Session, *, since: float | None = None, batch: int = 5000) -> Iterator[StoredRecord]:
    """Every record in order, read in batches (a log of millions does not fit a list)."""
    after = -1
    t = AuditRecordRow
    columns = (t.seq, t.at, t.kind, t.rollout_id, t.body, t.leaf, t.root)
    while True:
        # Plain rows, not ORM objects: a verify of 100,000 records spent most of its time building them.
        query = select(*columns).where(t.seq > after)
        if since is not None:
            query = query.where(t.at >= since)
        rows = s.execute(query.order_by(t.seq).limit(batch)).all()
        if not rows:
            return
        for seq, at, kind, rollout_id, body, leaf, root in rows:
            yield StoredRecord(seq, at, kind, rollout_id, body, leaf, root)
        after = rows[-1][0]


def head(s: Session) -> tuple[int, bytes]:
    """The head row's size and the root of its frontier."""
    row = s.get(AuditHeadRow, HEAD)
    return (row.size, _frontier(row.frontier_json).root()) if row else (0, _frontier("").root())


def stored_checkpoints(s: Session) -> list[tuple[int, str, str]]:
    """(size, note, where it was exported) of every checkpoint in the store, oldest first."""
    rows = s.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.size))
    return [(r.size, r.note, r.exported) for r in rows]


def record_at(s: Session, seq: int) -> StoredRecord | None:
    r = s.get(AuditRecordRow, seq)
    return StoredRecord(r.seq, r.at, r.kind, r.rollout_id, r.body, r.leaf, r.root) if r else None


def leaves(s: Session, size: int) -> list[bytes]:
    rows = s.execute(
        select(AuditRecordRow.leaf).where(AuditRecordRow.seq < size).order_by(AuditRecordRow.seq)
    )
    return [bytes.fromhex(leaf) for (leaf,) in rows]


def of_rollout(s: Session, rollout_id: str, kinds: tuple[str, ...]) -> list[StoredRecord]:
    rows = s.scalars(
        select(AuditRecordRow)
        .where(AuditRecordRow.rollout_id == rollout_id, AuditRecordRow.kind.in_(kinds))
        .order_by(AuditRecordRow.seq)
    )
    return [StoredRecord(r.seq, r.at, r.kind, r.rollout_id, r.body, r.leaf, r.root) for r in rows]


def seqs_of(s: Session, rollout_id: str) -> list[int]:
    rows = s.execute(
        select(AuditRecordRow.seq).where(AuditRecordRow.rollout_id == rollout_id).order_by(AuditRecordRow.seq)
    )
    return [seq for (seq,) in rows]
