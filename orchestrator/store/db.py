"""Durable rollout state and the journal of steps (SQLite by default, PostgreSQL by URL).

Workers and the CLI share nothing but this store and the broker: a rollout's resolved spec, each host's
state and progress, and one journal row per step attempt live here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState, RolloutState, check_transition


def now() -> float:
    return datetime.now(UTC).timestamp()


class Base(DeclarativeBase):
    pass


class RolloutRow(Base):
    __tablename__ = "rollouts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    pool: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    spec_json: Mapped[str] = mapped_column(Text)
    current_batch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class HostRow(Base):
    __tablename__ = "hosts"
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    progress_json: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[float] = mapped_column(Float)


class StepRow(Base):
    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    host: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), default="running")  # running, ok, failed
    detail: Mapped[str] = mapped_column(Text, default="")
    work: Mapped[float] = mapped_column(Float, default=0.0)  # seconds of the step's own work (bench)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tail: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class Rollout:
    id: str
    name: str
    pool: str
    state: RolloutState
    current_batch: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    reason: str
    spec: RolloutSpec


@dataclass(frozen=True)
class HostStatus:
    name: str
    batch: int
    state: HostState
    progress: dict[str, Any]
    updated_at: float


@dataclass(frozen=True)
class Step:
    id: int
    host: str
    step: str
    attempt: int
    started_at: float
    ended_at: float | None
    outcome: str
    detail: str
    work: float
    exit_code: int | None
    output_tail: str


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read progress while a worker writes; NORMAL sync is durable across process crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session.begin() as session:
            yield session

    # rollouts
    def create_rollout(self, spec: RolloutSpec) -> None:
        t = now()
        with self.session() as s:
            s.add(
                RolloutRow(
                    id=spec.rollout_id,
                    name=spec.name,
                    pool=spec.pool,
                    state=RolloutState.PENDING.value,
                    spec_json=spec.model_dump_json(),
                    current_batch=0,
                    created_at=t,
                    reason="",
                )
            )
            position = 0
            for batch_index, batch in enumerate(spec.batches):
                for host in batch:
                    s.add(
                        HostRow(
                            rollout_id=spec.rollout_id,
                            name=host,
                            position=position,
                            batch=batch_index,
                            state=HostState.PENDING.value,
                            progress_json="{}",
                            updated_at=t,
                        )
                    )
                    position += 1

    def rollout(self, rollout_id: str) -> Rollout | None:
        with self.session() as s:
            row = s.get(RolloutRow, rollout_id)
            return _rollout(row) if row else None

    def rollouts(self, *, limit: int = 50) -> list[Rollout]:
        with self.session() as s:
            rows = s.scalars(select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(limit)).all()
            return [_rollout(r) for r in rows]

    def set_rollout_state(self, rollout_id: str, state: RolloutState, reason: str = "") -> None:
        values: dict[str, Any] = {"state": state.value}
        if state is RolloutState.RUNNING:
            values["started_at"] = now()
        elif state in (RolloutState.SUCCEEDED, RolloutState.HALTED, RolloutState.FAILED):
            values["finished_at"] = now()
        if reason:
            values["reason"] = reason
        with self.session() as s:
            s.execute(update(RolloutRow).where(RolloutRow.id == rollout_id).values(**values))

    def claim_next_batch(self, rollout_id: str, finished_batch: int) -> bool:
        """Compare-and-set: of several workers finishing the batch's last hosts at once, exactly one wins."""
        with self.session() as s:
            result = s.execute(
                update(RolloutRow)
                .where(RolloutRow.id == rollout_id, RolloutRow.current_batch == finished_batch)
                .values(current_batch=finished_batch + 1)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    # hosts
    def hosts(self, rollout_id: str) -> list[HostStatus]:
        with self.session() as s:
            rows = s.scalars(
                select(HostRow).where(HostRow.rollout_id == rollout_id).order_by(HostRow.position)
            )
            return [
                HostStatus(r.name, r.batch, HostState(r.state), json.loads(r.progress_json), r.updated_at)
                for r in rows
            ]

    def host(self, rollout_id: str, name: str) -> HostStatus:
        with self.session() as s:
            r = s.get(HostRow, (rollout_id, name))
            if r is None:
                raise KeyError(f"rollout {rollout_id} has no host {name}")
            return HostStatus(r.name, r.batch, HostState(r.state), json.loads(r.progress_json), r.updated_at)

    def save_host(self, rollout_id: str, name: str, state: HostState, progress: dict[str, Any]) -> None:
        """Persist a host's state; refuses transitions the table does not allow."""
        with self.session() as s:
            row = s.get(HostRow, (rollout_id, name), with_for_update=True)
            if row is None:
                raise KeyError(f"rollout {rollout_id} has no host {name}")
            current = HostState(row.state)
            if current is not state:
                check_transition(current, state)
            row.state = state.value
            row.progress_json = json.dumps(progress)
            row.updated_at = now()

    # journal
    def step_started(self, rollout_id: str, host: str, step: str, detail: str = "") -> int:
        with self.session() as s:
            attempt = (
                len(
                    s.scalars(
                        select(StepRow.id).where(
                            StepRow.rollout_id == rollout_id, StepRow.host == host, StepRow.step == step
                        )
                    ).all()
                )
                + 1
            )
            row = StepRow(
                rollout_id=rollout_id, host=host, step=step, attempt=attempt, started_at=now(), detail=detail
            )
            s.add(row)
            s.flush()
            return row.id

    def step_ended(
        self,
        step_id: int,
        outcome: str,
        detail: str = "",
        *,
        work: float = 0.0,
        exit_code: int | None = None,
        output_tail: str = "",
    ) -> None:
        with self.session() as s:
            values: dict[str, Any] = {
                "ended_at": now(),
                "outcome": outcome,
                "work": work,
                "exit_code": exit_code,
                "output_tail": output_tail[-2000:],
            }
            if detail:
                values["detail"] = detail
            s.execute(update(StepRow).where(StepRow.id == step_id).values(**values))

    def steps(self, rollout_id: str, *, after: int = 0) -> list[Step]:
        with self.session() as s:
            rows = s.scalars(
                select(StepRow)
                .where(StepRow.rollout_id == rollout_id, StepRow.id > after)
                .order_by(StepRow.id)
            )
            return [
                Step(
                    r.id,
                    r.host,
                    r.step,
                    r.attempt,
                    r.started_at,
                    r.ended_at,
                    r.outcome,
                    r.detail,
                    r.work,
                    r.exit_code,
                    r.output_tail,
                )
                for r in rows
            ]


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        name=row.name,
        pool=row.pool,
        state=RolloutState(row.state),
        current_batch=row.current_batch,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        reason=row.reason,
        spec=RolloutSpec.model_validate_json(row.spec_json),
    )
