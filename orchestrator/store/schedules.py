"""Rollouts to start later, kept in the store so that any worker can start them, exactly once.

A schedule is ``scheduled`` until it is due (``run_at``, UTC epoch seconds, reached), then one worker's
``claim_due`` moves it to ``started`` with a compare-and-set and starts the rollout, recording its id,
or records ``failed`` and why. ``cancelled`` is an operator's doing, possible only while ``scheduled``.

    scheduled -> started     (claimed; rollout_id once the rollout exists)
              -> failed      (claimed, but the rollout could not be started: detail says why)
              -> cancelled   (`orchestrator unschedule ID`)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.errors import InputError
from orchestrator.procs import OWNER
from orchestrator.store.db import Store
from orchestrator.store.schema import Base


class ScheduleState(StrEnum):
    SCHEDULED = "scheduled"
    STARTED = "started"
    CANCELLED = "cancelled"
    FAILED = "failed"


class ScheduleRow(Base):
    """Migration 0002."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_state_run_at", "state", "run_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    playbook: Mapped[str] = mapped_column(Text)  # absolute: workers do not share the CLI's directory
    inventory: Mapped[str] = mapped_column(Text)
    hosts: Mapped[str] = mapped_column(Text, default="")  # the --hosts filter, comma-separated; "" for all
    run_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # never due while None
    next_window: Mapped[bool] = mapped_column(Boolean, default=False)  # run_at came from the window
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(20))
    # No foreign key: a failed start has no rollout, and the rollout is created by its own transaction.
    rollout_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    change_ticket: Mapped[str | None] = mapped_column(String(64), nullable=True)  # migration 0004
    reason: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class Schedule:
    id: int
    playbook: Path
    inventory: Path
    hosts: tuple[str, ...]
    run_at: float | None
    next_window: bool
    created_by: str
    created_at: float
    state: ScheduleState
    rollout_id: str | None
    detail: str
    change_ticket: str | None = None
    reason: str = ""


def add_schedule(
    store: Store,
    playbook: Path,
    inventory: Path,
    *,
    run_at: float,
    created_by: str,
    hosts: tuple[str, ...] = (),
    next_window: bool = False,
    detail: str = "",
    change_ticket: str | None = None,
    reason: str = "",
) -> Schedule:
    """Store a new schedule (paths made absolute) and return it with its id."""
    with store.session() as s:
        row = ScheduleRow(
            playbook=str(playbook.resolve()),
            inventory=str(inventory.resolve()),
            hosts=",".join(hosts),
            run_at=run_at,
            next_window=next_window,
            created_by=created_by,
            created_at=store.now(),
            state=ScheduleState.SCHEDULED.value,
            rollout_id=None,
            detail=detail,
            change_ticket=change_ticket,
            reason=reason,
        )
        s.add(row)
        s.flush()
        store.audit_record(
            s,
            "schedule.created",
            None,
            schedule=row.id,
            playbook=row.playbook,
            inventory=row.inventory,
            hosts=row.hosts,
            run_at=run_at,
            by=created_by,
            change_ticket=change_ticket,
            reason=reason,
        )
        return _schedule(row)


def get_schedule(store: Store, schedule_id: int) -> Schedule | None:
    with store.session() as s:
        row = s.get(ScheduleRow, schedule_id)
        return _schedule(row) if row else None


def list_schedules(
    store: Store, *, states: Collection[ScheduleState] | None = None, limit: int = 100
) -> list[Schedule]:
    """The ``limit`` newest schedules (in ``states`` if given), soonest first."""
    query = select(ScheduleRow).order_by(ScheduleRow.id.desc()).limit(limit)
    if states is not None:
        query = query.where(ScheduleRow.state.in_([s.value for s in states]))
    with store.session() as s:
        rows = [_schedule(r) for r in s.scalars(query)]
    return sorted(rows, key=lambda r: (r.run_at is None, r.run_at or 0.0, r.id))


def cancel_schedule(store: Store, schedule_id: int, actor: str, reason: str = "") -> Schedule:
    """Cancel a schedule that has not started; InputError (exit 2) for an unknown id or one that has
    already started, failed or been cancelled."""
    detail = f"cancelled by {actor} at {_iso(store.now())}" + (f": {reason}" if reason else "")
    with store.session() as s:
        result = s.execute(
            update(ScheduleRow)
            .where(ScheduleRow.id == schedule_id, ScheduleRow.state == ScheduleState.SCHEDULED.value)
            .values(state=ScheduleState.CANCELLED.value, detail=detail)
        )
        row = s.get(ScheduleRow, schedule_id)
        if row is not None and getattr(result, "rowcount", 0) == 1:
            store.audit_record(s, "schedule.cancelled", None, schedule=schedule_id, by=actor, reason=reason)
            return _schedule(row)
    if row is None:
        raise InputError(
            "ID", f"no schedule {schedule_id} in the store", "an id that `orchestrator schedules` lists"
        )
    was = f"{row.state}" + (f" as rollout {row.rollout_id}" if row.rollout_id else "")
    hint = f"; see `orchestrator status {row.rollout_id}`" if row.rollout_id else ""
    raise InputError(
        "ID",
        f"schedule {schedule_id} cannot be cancelled: it is already {was} ({row.detail or 'no detail'})",
        f"a schedule still in state 'scheduled'{hint}",
    )


def claim_due(store: Store, now: float, *, owner: str = OWNER) -> list[Schedule]:
    """Move every schedule due by ``now`` from scheduled to started and return those this call won.

    Each row is a compare-and-set of its own (``WHERE state = 'scheduled'``): of several workers
    claiming at once, exactly one gets each schedule, and no transaction holds more than one row.
    """
    with store.session() as s:
        due = s.scalars(
            select(ScheduleRow.id)
            .where(
                ScheduleRow.state == ScheduleState.SCHEDULED.value,
                ScheduleRow.run_at.is_not(None),
                ScheduleRow.run_at <= now,
            )
            .order_by(ScheduleRow.run_at, ScheduleRow.id)
        ).all()
    claimed: list[Schedule] = []
    for schedule_id in due:
        with store.session() as s:
            result = s.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id == schedule_id, ScheduleRow.state == ScheduleState.SCHEDULED.value)
                .values(state=ScheduleState.STARTED.value, detail=f"claimed by {owner} at {_iso(now)}")
            )
            if getattr(result, "rowcount", 0) == 1:
                row = s.get(ScheduleRow, schedule_id)
                if row is not None:
                    claimed.append(_schedule(row))
    return claimed


def mark_started(store: Store, schedule_id: int, rollout_id: str) -> None:
    _finish(store, schedule_id, ScheduleState.STARTED, f"started rollout {rollout_id}", rollout_id)


def mark_failed(store: Store, schedule_id: int, detail: str) -> None:
    _finish(store, schedule_id, ScheduleState.FAILED, detail, None)


def _finish(
    store: Store, schedule_id: int, state: ScheduleState, detail: str, rollout_id: str | None
) -> None:
    with store.session() as s:
        s.execute(
            update(ScheduleRow)
            .where(ScheduleRow.id == schedule_id, ScheduleRow.state == ScheduleState.STARTED.value)
            .values(state=state.value, detail=detail, rollout_id=rollout_id)
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _schedule(row: ScheduleRow) -> Schedule:
    return Schedule(
        id=row.id,
        playbook=Path(row.playbook),
        inventory=Path(row.inventory),
        hosts=tuple(h for h in row.hosts.split(",") if h),
        run_at=row.run_at,
        next_window=row.next_window,
        created_by=row.created_by,
        created_at=row.created_at,
        state=ScheduleState(row.state),
        rollout_id=row.rollout_id,
        detail=row.detail,
        change_ticket=row.change_ticket,
        reason=row.reason,
    )
