"""`audit verify`: recompute the log's tree from its records and hold it against every checkpoint.

What each check catches, and the record it names:
- a record whose text no longer hashes to its leaf: edited (that record);
- a record whose own sequence number is not its place: moved, swapped or inserted (that place);
- a gap in the sequence: removed (the first missing number);
- a stored tree root that the records up to it do not give: edited with its leaf re-hashed, or a
  record removed or inserted before it (the first record whose root differs);
- a log shorter than a signed checkpoint: its tail truncated;
- a signed root that the log's first N records do not give: the log rewritten and re-hashed whole,
  which only a signature made before the rewrite can show (named as the range between the last
  checkpoint that still matches and the first that does not);
- between consecutive checkpoints, an RFC 9162 consistency proof: the later tree extends the earlier.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.audit.checkpoint import Checkpoint, CheckpointError, open_note
from orchestrator.audit.merkle import Frontier, Levels, leaf_hash, verify_consistency

PRUNED = "audit.pruned"  # the record a prune leaves (store.retention): which records it emptied, by whom, why


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    at: float
    kind: str
    rollout_id: str | None
    body: str  # "" once pruned: its leaf hash stands for it
    leaf: str
    root: str

    def fields(self) -> dict[str, Any]:
        return dict(json.loads(self.body)) if self.body else {}


@dataclass(frozen=True)
class SignedCheckpoint:
    where: str  # "store" or the exported file's path
    note: str


@dataclass
class Verdict:
    records: int = 0
    checkpoints: list[tuple[str, Checkpoint]] = field(default_factory=list)  # the valid ones
    problems: list[str] = field(default_factory=list)
    first_bad: int | None = None  # the first record named by a problem
    pruned: int = 0  # records whose content a prune removed (their hashes stand for them)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def signed_sizes(self) -> int:
        """How many distinct checkpoints verified (one may be in the store and exported too)."""
        return len({c.size for _, c in self.checkpoints})

    @property
    def covered(self) -> int:
        """How many records the latest valid checkpoint covers."""
        return max((c.size for _, c in self.checkpoints), default=0)

    def bad(self, text: str, seq: int | None = None) -> None:
        self.problems.append(text)
        if seq is not None and (self.first_bad is None or seq < self.first_bad):
            self.first_bad = seq


def _record_problem(r: StoredRecord, expected: int, leaf: bytes) -> str | None:
    if r.seq != expected:
        return (
            f"record {expected} is missing: the log jumps from {expected - 1} to {r.seq} (removed)"
            if r.seq > expected
            else f"record {r.seq} appears again after record {expected - 1} (inserted)"
        )
    if not r.body:
        return None
    if leaf.hex() != r.leaf:
        return f"record {r.seq} ({r.kind}) was altered: its content no longer matches its hash"
    try:
        fields = json.loads(r.body)
    except ValueError:
        return f"record {r.seq} is not JSON any more (altered)"
    if fields.get("seq") != r.seq:
        return (
            f"record {r.seq} holds the content of record {fields.get('seq')}: records were moved, "
            "swapped or inserted"
        )
    if fields.get("kind") != r.kind or fields.get("rollout") != r.rollout_id or fields.get("at") != r.at:
        return f"record {r.seq}: its time, kind or rollout column was altered (the content says otherwise)"
    return None


def _pruned_by(fields: dict[str, object]) -> set[int]:
    ranges = fields.get("records")
    out: set[int] = set()
    if isinstance(ranges, list):
        for pair in ranges:
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, int) for n in pair):
                out.update(range(pair[0], pair[1] + 1))
    return out


def _checkpoints(
    signed: Sequence[SignedCheckpoint], verifiers: Sequence[str], verdict: Verdict
) -> dict[int, tuple[str, Checkpoint]]:
    by_size: dict[int, tuple[str, Checkpoint]] = {}
    for item in signed:
        try:
            checkpoint = open_note(item.note, verifiers)
        except CheckpointError as exc:
            verdict.bad(f"checkpoint {item.where}: {exc}")
            continue
        seen = by_size.get(checkpoint.size)
        if seen and seen[1].root != checkpoint.root:
            verdict.bad(
                f"checkpoints {seen[0]} and {item.where} are both signed at size {checkpoint.size} "
                "with different roots: two versions of the log exist"
            )
            continue
        by_size.setdefault(checkpoint.size, (item.where, checkpoint))
        verdict.checkpoints.append((item.where, checkpoint))
    return by_size


def verify(
    records: Iterable[StoredRecord],
    signed: Sequence[SignedCheckpoint],
    verifiers: Sequence[str],
    *,
    head_size: int | None = None,
    head_root: bytes | None = None,
) -> Verdict:
    verdict = Verdict()
    by_size = _checkpoints(signed, verifiers, verdict)
    frontier = Frontier()
    leaves: list[bytes] = []
    roots: dict[int, bytes] = {}
    broken = False
    emptied: list[int] = []  # records without content: each must be one a later prune record names
    pruned: set[int] = set()
    for r in records:
        leaf = leaf_hash(r.body.encode()) if r.body else bytes.fromhex(r.leaf)
        problem = _record_problem(r, len(leaves), leaf)
        if problem is None:
            frontier.append(leaf)
            if frontier.root().hex() != r.root:
                problem = (
                    f"record {r.seq} ({r.kind}): the tree root stored with it is not the root of the "
                    f"records up to it: a record at or before {r.seq} was altered, removed or inserted"
                )
        if problem is not None:
            verdict.bad(problem, len(leaves))
            broken = True
            break
        leaves.append(leaf)
        if not r.body:
            emptied.append(r.seq)
        elif r.kind == PRUNED:
            pruned |= _pruned_by(json.loads(r.body))
        if frontier.size in by_size:
            roots[frontier.size] = frontier.root()
    verdict.records = len(leaves)
    verdict.pruned = len(emptied)
    unexplained = [seq for seq in emptied if seq not in pruned]
    if unexplained:
        verdict.bad(
            f"record {unexplained[0]} was emptied, and no prune record names it"
            + (f" ({len(unexplained)} such records)" if len(unexplained) > 1 else ""),
            unexplained[0],
        )
    if not broken and head_root is not None and head_size == len(leaves) and head_root != frontier.root():
        verdict.bad(f"the log's head row was altered: its tree is not the tree of its {len(leaves)} records")
    if not broken and head_size is not None and head_size != len(leaves):
        verdict.bad(
            f"the log holds {len(leaves)} records but its head says {head_size}: "
            + (
                "records at the end were removed" if head_size > len(leaves) else "records were added by hand"
            ),
            min(head_size, len(leaves)),
        )
    _against_checkpoints(verdict, by_size, roots, leaves, broken)
    return verdict


def _against_checkpoints(
    verdict: Verdict,
    by_size: dict[int, tuple[str, Checkpoint]],
    roots: dict[int, bytes],
    leaves: list[bytes],
    broken: bool,
) -> None:
    matching = 0
    for size in sorted(by_size):
        where, checkpoint = by_size[size]
        if size > len(leaves):
            if not broken:
                verdict.bad(
                    f"the log has {len(leaves)} records but checkpoint {where} was signed at size {size}: "
                    f"records {len(leaves)} to {size - 1} are gone (the tail was truncated)",
                    len(leaves),
                )
            return
        if roots.get(size, b"") != checkpoint.root:
            verdict.bad(
                f"the log's first {size} records are not the ones checkpoint {where} signed: the log "
                f"was rewritten between record {matching} and record {size - 1}",
                matching,
            )
            return
        matching = size
    levels = Levels(leaves)
    ordered = [by_size[size][1] for size in sorted(by_size)]
    for old, new in itertools.pairwise(ordered):
        proof = levels.consistency_proof(old.size, new.size)
        if not verify_consistency(old.size, new.size, old.root, new.root, proof):
            verdict.bad(f"checkpoints at sizes {old.size} and {new.size} are not consistent")
