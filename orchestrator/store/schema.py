"""The tables. Changing one means a new migration in store/migrations/versions (Alembic)."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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
    pause_cause: Mapped[str | None] = mapped_column(String(20), nullable=True)  # PauseCause when paused


class HostRow(Base):
    __tablename__ = "hosts"
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    progress_json: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[float] = mapped_column(Float)
    # The one tick chain allowed to act on this host: a delivered tick with another token is stale.
    token: Mapped[str] = mapped_column(String(40), default="")
    # Who is acting on the host right now, and until when that claim holds without renewal.
    lease_owner: Mapped[str | None] = mapped_column(String(120), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class StepRow(Base):
    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    host: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), default="running")  # running, ok, failed, interrupted
    detail: Mapped[str] = mapped_column(Text, default="")
    work: Mapped[float] = mapped_column(Float, default=0.0)  # seconds of the step's own work (bench)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tail: Mapped[str] = mapped_column(Text, default="")
    command_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # migration 0004
    output_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PoolLockRow(Base):
    """One rollout per pool: the row exists while that rollout is not over."""

    __tablename__ = "pool_locks"
    pool: Mapped[str] = mapped_column(String(64), primary_key=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"))
    acquired_at: Mapped[float] = mapped_column(Float)


class ActionRow(Base):
    """Operator actions and orchestrator decisions worth auditing (resume, takeover of a stale lock)."""

    __tablename__ = "actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(120))
    at: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")  # why, in the actor's words (abort, reject...)
    batch: Mapped[int | None] = mapped_column(
        Integer, nullable=True
    )  # an approval: after this batch (1-based)


class AuditRecordRow(Base):
    """One leaf of the audit log's Merkle tree (orchestrator.audit). No foreign key: a record outlives
    the rollout it is about, and a pruned record keeps its leaf hash (the tree stays whole) with an
    empty body."""

    __tablename__ = "audit_records"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(40))
    rollout_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    body: Mapped[str] = mapped_column(Text)  # the canonical JSON the leaf hash is over
    leaf: Mapped[str] = mapped_column(String(64))  # hex SHA-256(0x00 || body)
    root: Mapped[str] = mapped_column(String(64))  # hex root of the tree once this record is in it


class AuditHeadRow(Base):
    """The log's one row of state: its size and the compact range (frontier) that makes an append
    O(log n). Every append locks it, which keeps several workers' appends one linear log."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(Integer)
    frontier_json: Mapped[str] = mapped_column(Text)


class AuditCheckpointRow(Base):
    """A signed checkpoint (C2SP tlog-checkpoint) of the log at ``size`` records."""

    __tablename__ = "audit_checkpoints"
    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text)
    exported: Mapped[str] = mapped_column(Text, default="")  # where a copy was written outside the store


class LbSampleRow(Base):
    """What the load balancer showed once per sampling slot while a rollout ran (availability)."""

    __tablename__ = "lb_samples"
    rollout_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # at // interval
    at: Mapped[float] = mapped_column(Float)
    in_service: Mapped[int] = mapped_column(Integer)
    servers: Mapped[int] = mapped_column(Integer)
    sessions: Mapped[int] = mapped_column(Integer)
    # {server: [in service 0/1, sessions, http_5xx, connection_errors, response_errors, retries,
    # redispatches]}: the counters as HAProxy keeps them (cumulative since its process started)
    servers_json: Mapped[str] = mapped_column(Text)
