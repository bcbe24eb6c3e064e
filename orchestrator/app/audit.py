"""What the `audit` commands do with the store: verify the log, prove a record, export, prune."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.audit.checkpoint import CheckpointError, open_note, unverified, verifier_text
from orchestrator.audit.merkle import Levels, leaf_hash, verify_inclusion
from orchestrator.audit.signing import exported
from orchestrator.audit.verify import SignedCheckpoint, StoredRecord, Verdict, verify
from orchestrator.config import Settings
from orchestrator.errors import InputError
from orchestrator.store import audit
from orchestrator.store.db import Store


def verifiers(settings: Settings, given: Sequence[str]) -> list[str]:
    """The keys to trust: given ones (``--key``, ORCH_AUDIT_VERIFIER), else the local signing key's."""
    keys = [*given, *filter(None, os.environ.get("ORCH_AUDIT_VERIFIER", "").split(","))]
    if keys:
        return keys
    from orchestrator.audit.checkpoint import load_signer

    try:
        return [verifier_text(load_signer(settings.audit_key_file))]
    except (OSError, ValueError):
        return []


def _stored_records(store: Store) -> Iterator[StoredRecord]:
    with store.session() as s:
        yield from audit.records(s)


def verify_store(store: Store, settings: Settings, files: Sequence[Path], keys: Sequence[str]) -> Verdict:
    signed = [SignedCheckpoint("store", note) for _, note, _ in _checkpoints(store)]
    for path in [*exported(settings.audit_folder), *files]:
        try:
            signed.append(SignedCheckpoint(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(path), f"cannot read the checkpoint ({exc})", "a checkpoint file") from None
    with store.session() as s:
        size, root = audit.head(s)
    return verify(_stored_records(store), signed, keys, head_size=size, head_root=root)


def _checkpoints(store: Store) -> list[tuple[int, str, str]]:
    with store.session() as s:
        return audit.stored_checkpoints(s)


def proof(store: Store, seq: int, checkpoint: str | None) -> dict[str, Any]:
    """An inclusion proof of record ``seq`` against a checkpoint (the given note, else the first
    stored one that covers the record): everything `audit check-proof` needs, offline."""
    with store.session() as s:
        record = audit.record_at(s, seq)
        stored = audit.stored_checkpoints(s)
    if record is None:
        raise InputError("RECORD", f"no audit record {seq}", "a record number `audit export` lists")
    note = checkpoint or next((n for size, n, _ in stored if size > seq), None)
    if note is None:
        raise InputError(
            "RECORD", f"no checkpoint covers record {seq} yet", "wait for the rollout's end, or --checkpoint"
        )
    try:
        size = unverified(note).size
    except CheckpointError as exc:
        raise InputError("--checkpoint", f"not a checkpoint ({exc})", "a file `audit` exported") from None
    if size <= seq:
        raise InputError("--checkpoint", f"the checkpoint is of size {size}", f"one above {seq}")
    with store.session() as s:
        tree = Levels(audit.leaves(s, size))
    return {
        "record": seq,
        "body": record.body,
        "leaf": record.leaf,
        "tree_size": size,
        "proof": [h.hex() for h in tree.inclusion_proof(seq, size)],
        "checkpoint": note,
    }


def check_proof(document: dict[str, Any], keys: Sequence[str], checkpoint: str | None) -> str:
    """Verify a proof offline; returns what it proves, raises ValueError saying what does not hold."""
    note = checkpoint or document["checkpoint"]
    try:
        signed = open_note(note, keys)
    except CheckpointError as exc:
        raise ValueError(f"the checkpoint does not verify: {exc}") from None
    seq, size = int(document["record"]), int(document["tree_size"])
    if size != signed.size:
        raise ValueError(f"the proof is for a tree of {size} records, the checkpoint is of {signed.size}")
    leaf = leaf_hash(document["body"].encode()) if document["body"] else bytes.fromhex(document["leaf"])
    if document["body"] and leaf.hex() != document["leaf"]:
        raise ValueError("the record's text does not hash to the proof's leaf")
    path = [bytes.fromhex(h) for h in document["proof"]]
    if not verify_inclusion(leaf, seq, size, path, signed.root):
        raise ValueError(f"record {seq} is not in the tree the checkpoint signed")
    return f"record {seq} is in the log {signed.origin} of {signed.size} records signed by the checkpoint"


def export_lines(store: Store, since: float | None) -> Iterator[str]:
    """One JSON object per record for a SIEM: the record as recorded, with its place and hashes."""
    with store.session() as s:
        for r in audit.records(s, since=since):
            yield json.dumps(
                {"seq": r.seq, "leaf": r.leaf, "root": r.root, "pruned": not r.body, "record": r.fields()},
                ensure_ascii=False,
                sort_keys=True,
            )
