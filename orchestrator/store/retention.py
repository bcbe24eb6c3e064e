"""Retention: rollouts and their records are kept until an operator prunes them. A prune is itself
an audited change, and it refuses to touch a record that no exported checkpoint covers yet: once
emptied, a record is only its leaf hash, and only a signature made outside the store can still vouch
for what it said."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update

from orchestrator.audit.verify import PRUNED
from orchestrator.errors import RolloutRefused
from orchestrator.model.states import ROLLOUT_DONE
from orchestrator.store.db import Store
from orchestrator.store.schema import (
    ActionRow,
    AuditCheckpointRow,
    AuditRecordRow,
    HostRow,
    LbSampleRow,
    PoolLockRow,
    RolloutRow,
    StepRow,
)


@dataclass(frozen=True)
class Pruned:
    rollouts: list[str]
    records: list[list[int]]  # [first, last] ranges of emptied records
    covered: int  # the exported checkpoint that vouches for them: its size


def ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def prune(store: Store, before: float, actor: str, reason: str) -> Pruned:
    """Remove every rollout that ended before ``before`` (its hosts, journal, actions, samples) and
    empty its audit records, keeping their hashes; record who did it and why."""
    with store.session() as s:
        exported = s.scalars(select(AuditCheckpointRow.size).where(AuditCheckpointRow.exported != "")).all()
        covered = max(exported, default=0)
        done = [x.value for x in ROLLOUT_DONE]
        ids = list(
            s.scalars(
                select(RolloutRow.id).where(RolloutRow.state.in_(done), RolloutRow.finished_at < before)
            )
        )
        seqs = list(
            s.scalars(
                select(AuditRecordRow.seq).where(
                    AuditRecordRow.rollout_id.in_(ids), AuditRecordRow.body != ""
                )
            )
        )
        late = [n for n in seqs if n >= covered]
        if late:
            raise RolloutRefused(
                f"prune refused: record {min(late)} and {len(late) - 1} more are not covered by an "
                f"exported checkpoint yet (the latest exported covers {covered} records); nothing "
                "was removed. Checkpoints are exported at each rollout's end: check ORCH_AUDIT_CHECKPOINTS"
            )
        for table in (StepRow, HostRow, ActionRow, PoolLockRow):
            s.execute(delete(table).where(table.rollout_id.in_(ids)))
        s.execute(delete(LbSampleRow).where(LbSampleRow.rollout_id.in_(ids)))
        s.execute(delete(RolloutRow).where(RolloutRow.id.in_(ids)))
        s.execute(update(AuditRecordRow).where(AuditRecordRow.seq.in_(seqs)).values(body=""))
        emptied = ranges(seqs)
        store.audit_record(
            s,
            PRUNED,
            None,
            by=actor,
            reason=reason,
            before=before,
            rollouts=ids,
            records=emptied,
            covered_by=covered,
        )
    return Pruned(ids, emptied, covered)
