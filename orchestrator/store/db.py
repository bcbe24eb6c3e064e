"""Durable rollout state and the journal of steps (SQLite by default, PostgreSQL by URL).

Workers and the CLI share nothing but this store and the broker: a rollout's resolved spec, each host's
state and progress, and one journal row per step attempt live here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, create_engine, delete, event, func, make_url, or_, select, update
from sqlalchemy.exc import (
    ArgumentError,
    InterfaceError,
    InternalError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import ConfigError, RolloutRefused, StateError, StoreUnavailable, Superseded
from orchestrator.model.progress import Progress
from orchestrator.model.records import Action, HostStatus, Rollout, Step
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import (
    ACTIVE,
    OUT_OF_SERVICE,
    ROLLOUT_DONE,
    TERMINAL,
    HostState,
    PauseCause,
    RolloutState,
    check_rollout_transition,
    check_transition,
)
from orchestrator.redact import redact
from orchestrator.store import sqlite
from orchestrator.store.audit import AuditLog
from orchestrator.store.migrate import upgrade
from orchestrator.store.schema import (
    ActionRow,
    AuditCheckpointRow,
    HostRow,
    PoolLockRow,
    RolloutRow,
    StepRow,
)


def now() -> float:
    return datetime.now(UTC).timestamp()


def _first_line(exc: BaseException) -> str:
    """The driver's own message, first line, without SQLAlchemy's background link or the password."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


# Words of a server that is there but wrong for us (the user's settings), as opposed to one that does
# not answer now (an outage: wait and try again).
_CONFIG_MISTAKES = (
    "password authentication failed",
    "does not exist",
    "could not translate host name",
    "name or service not known",
    "unable to open database file",
    "no such host",
    "role",
)


def _is_outage(exc: BaseException) -> bool:
    if not isinstance(exc, OperationalError | InterfaceError | InternalError):
        return False
    text = str(getattr(exc, "orig", None) or exc).lower()
    return not any(words in text for words in _CONFIG_MISTAKES)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def _redact_parameters(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
) -> tuple[str, Any]:
    """Every value written goes through here: a secret this process read never reaches the database,
    whichever table or column (journal, output tails, reasons, progress) it would have gone to."""
    return statement, _redact(parameters)


POSTGRES_BOUNDS: dict[str, Any] = {
    "connect_timeout": 10,
    "options": "-c statement_timeout=30000 -c lock_timeout=10000",
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}


# Only the back ends the store is tested on; anything else fails as a setting, not as a missing driver.
BACKENDS = ("sqlite", "postgresql")


# A reader that must answer quickly (a metrics scrape, which Prometheus gives 10 s by default) gives up
# sooner than the engine, which waits out an outage anyway.
QUICK_POSTGRES_BOUNDS: dict[str, Any] = {
    **POSTGRES_BOUNDS,
    "connect_timeout": 3,
    "options": "-c statement_timeout=5000 -c lock_timeout=3000",
    "tcp_user_timeout": 5000,
}


def make_engine(url: str, *, quick: bool = False) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend not in BACKENDS:
        raise ArgumentError(f"the {backend!r} back end is not supported, only {' and '.join(BACKENDS)}")
    if backend == "sqlite":
        engine = sqlite.make_engine(url)
    else:
        # A server that never answers must not hang the CLI, a worker or a scrape: bounded connects,
        # statements and lock waits, and TCP that notices a peer gone silent (libpq's own settings).
        bounds = QUICK_POSTGRES_BOUNDS if quick else POSTGRES_BOUNDS
        engine = create_engine(url, pool_pre_ping=True, connect_args=bounds)
    event.listen(engine, "before_cursor_execute", _redact_parameters, retval=True)
    return engine


def safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


class Store:
    def __init__(
        self,
        url: str,
        *,
        setting: str = "ORCH_DATABASE_URL",
        clock: Callable[[], float] | None = None,
        quick: bool = False,
        audit: AuditLog | None = None,
    ) -> None:
        self.url = url
        self.audit = audit or AuditLog()  # without a checkpointer: records, but no signed checkpoint
        self.now = clock or now  # every timestamp the store writes or compares against
        self.where = f"{setting}: {safe_url(url)}"
        try:
            self.engine = make_engine(url, quick=quick)
            upgrade(self.engine)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ConfigError(
                f"{self.where}: not a database URL the store can use ({_first_line(exc)}); "
                "sqlite:////path/orchestrator.db or postgresql+psycopg://USER:PASSWORD@HOST/DB"
            ) from None
        except (SQLAlchemyError, OSError) as exc:
            if _is_outage(exc):
                raise StoreUnavailable(f"{self.where}: {self._why(exc)}; try again when it is back") from None
            db = sqlite.path_of(url) if url.startswith("sqlite") else None
            reason = db and sqlite.why(db, _first_line(exc))
            raise ConfigError(
                f"{self.where}: cannot open the store: {reason}"
                if reason
                else f"{self.where}: cannot open the store: {_first_line(exc)}; check the server, the "
                "credentials and the database name (or the SQLite file's folder and its permissions)"
            ) from None
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction. A store that does not answer raises StoreUnavailable (transient); a bug in
        a statement still raises as itself."""
        try:
            with self._session.begin() as session:
                yield session
        except (OperationalError, InterfaceError, InternalError) as exc:
            self.audit.rolled_back()
            raise StoreUnavailable(f"{self.where}: {self._why(exc)}") from exc
        except BaseException:
            self.audit.rolled_back()
            raise
        self.audit.committed(self._exported)

    def _exported(self, size: int, where: str) -> None:
        with self.session() as s:
            row = s.get(AuditCheckpointRow, size)
            if row is not None:
                row.exported = where

    def audit_record(self, s: Session, kind: str, rollout_id: str | None, **fields: Any) -> None:
        """Append to the audit log in this transaction: last, after every row lock it takes."""
        self.audit.append(s, self.now(), kind, rollout_id, fields)

    def _why(self, exc: BaseException) -> str:
        found = _first_line(exc)
        db = sqlite.path_of(self.url) if self.url.startswith("sqlite") else None
        return (db and sqlite.why(db, found)) or f"the store does not answer: {found}"

    # rollouts
    def create_rollout(self, spec: RolloutSpec, *, stale_after: float = 600.0) -> None:
        """Store a new rollout and take its pool's lock, or refuse naming the rollout that holds it.

        A lock whose rollout made no progress for ``stale_after`` seconds is stale: it is taken over,
        unless that rollout still has a host in flight (out of its pool), which only `resume` may finish.
        """
        t = self.now()
        with self.session() as s:
            lock = s.get(PoolLockRow, spec.pool, with_for_update=True)
            if lock is not None:
                self._refuse_or_take_over(s, lock, spec, t, stale_after)
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
            s.flush()
            s.add(PoolLockRow(pool=spec.pool, rollout_id=spec.rollout_id, acquired_at=t))
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
                            token="",
                        )
                    )
                    position += 1
            request = spec.request
            self.audit_record(
                s,
                "rollout.created",
                spec.rollout_id,
                name=spec.name,
                pool=spec.pool,
                batches=spec.batches,
                spec_sha256=hashlib.sha256(spec.model_dump_json().encode()).hexdigest(),
                requested_by=request.requested_by if request else "",
                change_ticket=request.change_ticket if request else None,
                reason=request.reason if request else None,
                playbook={
                    "path": str(spec.playbook_path),
                    "sha256": request.playbook.sha256 if request else "",
                },
                inventory={
                    "path": str(spec.inventory_path),
                    "sha256": request.inventory.sha256 if request else "",
                },
            )

    def _refuse_or_take_over(
        self, s: Session, lock: PoolLockRow, spec: RolloutSpec, t: float, stale_after: float
    ) -> None:
        holder = s.get(RolloutRow, lock.rollout_id)
        hosts = s.scalars(select(HostRow).where(HostRow.rollout_id == lock.rollout_id)).all()
        if holder is None or holder.state in {x.value for x in ROLLOUT_DONE}:
            s.delete(lock)  # a leftover of a rollout that ended
            s.flush()
            return
        last = _last_progress(s, holder, t)
        in_flight = [
            f"{h.name} {h.state}"
            for h in hosts
            if h.state not in {x.value for x in TERMINAL} and h.state != HostState.PENDING.value
        ]
        quiet = t - last
        if quiet < stale_after or in_flight:
            why = (
                f"last progress {quiet:.0f}s ago"
                if quiet < stale_after
                else f"no progress for {quiet:.0f}s, with hosts in flight: {', '.join(in_flight)}; "
                f"finish it with `orchestrator resume {holder.id}`"
            )
            raise RolloutRefused(
                f"pool {spec.pool} is being updated by rollout {holder.id} ({holder.name}, "
                f"{holder.state}; {why}); see `orchestrator status {holder.id}`"
            )
        reason = (
            f"abandoned: no progress for {quiet:.0f}s and no host in flight; superseded by {spec.rollout_id}"
        )
        s.expunge(lock)  # the ending below deletes its row
        self._transition(s, holder, RolloutState.FAILED, t, reason=reason)
        s.add(ActionRow(rollout_id=holder.id, action="abandon", actor="orchestrator", at=t, detail=reason))
        self.audit_record(
            s, "action", holder.id, action="abandon", actor="orchestrator", detail=reason, reason=""
        )
        s.flush()

    def _transition(
        self,
        s: Session,
        row: RolloutRow,
        to: RolloutState,
        at: float,
        *,
        reason: str | None,
        cause: PauseCause | None = None,
    ) -> None:
        before = row.state
        _transition(s, row, to, at, reason=reason, cause=cause)
        self.audit_record(
            s,
            "rollout.state",
            row.id,
            **{"from": before},
            to=to.value,
            reason=row.reason,
            cause=cause.value if cause else None,
        )
        if to in ROLLOUT_DONE:
            self.audit.checkpoint_now(s, at)  # the rollout's whole record is covered by a signature

    def rollout(self, rollout_id: str) -> Rollout | None:
        with self.session() as s:
            row = s.get(RolloutRow, rollout_id)
            return _rollout(row) if row else None

    def rollouts(self, *, limit: int = 50) -> list[Rollout]:
        with self.session() as s:
            rows = s.scalars(select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(limit)).all()
            return [_rollout(r) for r in rows]

    def transition_rollout(
        self,
        rollout_id: str,
        to: RolloutState,
        *,
        reason: str | None = None,
        cause: PauseCause | None = None,
        only_from: frozenset[RolloutState] | None = None,
        only_cause: PauseCause | None = None,
    ) -> bool:
        """The one way a rollout's state changes, checked against ROLLOUT_TRANSITIONS.

        A compare-and-set: with ``only_from`` (or ``only_cause``, for a paused rollout), nothing happens
        unless the rollout is in one of those states (paused for that cause); of several workers deciding
        at once, one wins. Returns whether it changed. A transition the table does not allow raises
        StateError. ``cause`` is required for PAUSED and cleared on any other state; a first RUNNING sets
        ``started_at``, an ending sets ``finished_at`` and frees the pool's lock."""
        if (to is RolloutState.PAUSED) != (cause is not None):
            raise StateError(f"a pause needs a cause and only a pause has one ({to.value}, {cause})")
        with self.session() as s:
            row = s.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None:
                return False
            current = RolloutState(row.state)
            if only_from is not None and current not in only_from:
                return False
            if only_cause is not None and (
                current is not RolloutState.PAUSED or row.pause_cause != only_cause
            ):
                return False
            if current is to and (to is not RolloutState.PAUSED or row.pause_cause == cause):
                return False
            self._transition(s, row, to, self.now(), reason=reason, cause=cause)
            return True

    def last_progress(self, rollout_id: str, at: float) -> float:
        """See _last_progress; ``at`` when the rollout does not exist."""
        with self.session() as s:
            row = s.get(RolloutRow, rollout_id)
            return _last_progress(s, row, at) if row is not None else at

    def active_rollouts(self) -> list[Rollout]:
        with self.session() as s:
            done = [x.value for x in ROLLOUT_DONE]
            rows = s.scalars(
                select(RolloutRow).where(RolloutRow.state.not_in(done)).order_by(RolloutRow.created_at)
            )
            return [_rollout(r) for r in rows]

    def record_action(
        self,
        rollout_id: str,
        action: str,
        actor: str,
        detail: str = "",
        reason: str = "",
        *,
        batch: int | None = None,
    ) -> None:
        with self.session() as s:
            s.add(
                ActionRow(
                    rollout_id=rollout_id,
                    action=action,
                    actor=actor,
                    at=self.now(),
                    detail=detail,
                    reason=reason,
                    batch=batch,
                )
            )
            self.audit_record(
                s, "action", rollout_id, action=action, actor=actor, detail=detail, reason=reason, batch=batch
            )

    def audit_event(self, rollout_id: str, kind: str, **fields: Any) -> None:
        """An audit record of something the engine did that no other table keeps."""
        with self.session() as s:
            self.audit_record(s, kind, rollout_id, **fields)

    def actions(self, rollout_id: str) -> list[tuple[float, str, str, str]]:
        return [(a.at, a.action, a.actor, a.detail) for a in self.action_log(rollout_id)]

    def action_log(self, rollout_id: str) -> list[Action]:
        with self.session() as s:
            rows = s.scalars(
                select(ActionRow).where(ActionRow.rollout_id == rollout_id).order_by(ActionRow.id)
            )
            return [Action(r.at, r.action, r.actor, r.detail, r.reason, r.batch) for r in rows]

    def claim_next_batch(self, rollout_id: str, finished_batch: int) -> bool:
        """Compare-and-set: of several workers finishing the batch's last hosts at once, exactly one wins."""
        with self.session() as s:
            result = s.execute(
                update(RolloutRow)
                .where(RolloutRow.id == rollout_id, RolloutRow.current_batch == finished_batch)
                .values(current_batch=finished_batch + 1)
            )
            won = bool(getattr(result, "rowcount", 0) == 1)
            if won:
                self.audit_record(s, "batch.next", rollout_id, batch=finished_batch + 1)
            return won

    # hosts
    def hosts(self, rollout_id: str) -> list[HostStatus]:
        with self.session() as s:
            rows = s.scalars(
                select(HostRow).where(HostRow.rollout_id == rollout_id).order_by(HostRow.position)
            )
            return [
                HostStatus(
                    r.name,
                    r.batch,
                    HostState(r.state),
                    Progress.from_json(json.loads(r.progress_json)),
                    r.updated_at,
                    r.token,
                )
                for r in rows
            ]

    def host(self, rollout_id: str, name: str) -> HostStatus:
        with self.session() as s:
            r = s.get(HostRow, (rollout_id, name))
            if r is None:
                raise KeyError(f"rollout {rollout_id} has no host {name}")
            return HostStatus(
                r.name,
                r.batch,
                HostState(r.state),
                Progress.from_json(json.loads(r.progress_json)),
                r.updated_at,
                r.token,
            )

    def save_host(
        self, rollout_id: str, name: str, state: HostState, progress: Progress, *, token: str | None = None
    ) -> None:
        """Persist a host's state; refuses transitions the table does not allow. With ``token``, only
        while it is still the host's (else Superseded: a newer tick chain owns the host)."""
        with self.session() as s:
            row = s.get(HostRow, (rollout_id, name), with_for_update=True)
            if row is None:
                raise KeyError(f"rollout {rollout_id} has no host {name}")
            if token is not None and row.token != token:
                raise Superseded(f"{rollout_id}/{name}: a newer tick chain holds the host")
            current = HostState(row.state)
            if current is not state:
                check_transition(current, state)
            row.state = state.value
            row.progress_json = json.dumps(progress.to_json())
            row.updated_at = self.now()
            if current is not state:
                self.audit_record(
                    s,
                    "host.state",
                    rollout_id,
                    host=name,
                    **{"from": current.value},
                    to=state.value,
                    error=progress.error,
                )

    def claim_start(
        self, rollout_id: str, name: str, to: HostState, decide: Callable[[set[str]], bool]
    ) -> bool:
        """Move a host out of pending (or succeeded, to roll it back) into ``to`` only if ``decide``
        agrees, given this rollout's hosts already out of service. One host at a time per rollout: the
        first statement locks the rollout's row, so two hosts of a batch never both take the last slot."""
        with self.session() as s:
            s.execute(
                update(RolloutRow)
                .where(RolloutRow.id == rollout_id)
                .values(current_batch=RolloutRow.current_batch)
            )
            rows = s.scalars(select(HostRow).where(HostRow.rollout_id == rollout_id)).all()
            out = {r.name for r in rows if HostState(r.state) in OUT_OF_SERVICE}
            row = next((r for r in rows if r.name == name), None)
            if row is None or not decide(out):
                return False
            before = row.state
            check_transition(HostState(before), to)
            row.state = to.value
            row.updated_at = self.now()
            self.audit_record(
                s, "host.state", rollout_id, host=name, **{"from": before}, to=to.value, error=""
            )
            return True

    def move_host_to_batch(self, rollout_id: str, name: str, batch: int) -> None:
        with self.session() as s:
            s.execute(
                update(HostRow)
                .where(HostRow.rollout_id == rollout_id, HostRow.name == name)
                .values(batch=batch)
            )
            self.audit_record(s, "host.postponed", rollout_id, host=name, batch=batch)

    def finish_rollout(self, rollout_id: str, state: RolloutState, reason: str) -> bool:
        """Set a final state once: of several workers deciding the end at once, one wins."""
        return self.transition_rollout(rollout_id, state, reason=reason, only_from=ACTIVE)

    def skip_pending(self, rollout_id: str) -> list[str]:
        with self.session() as s:
            rows = s.scalars(
                select(HostRow).where(
                    HostRow.rollout_id == rollout_id, HostRow.state == HostState.PENDING.value
                )
            ).all()
            for row in rows:
                check_transition(HostState(row.state), HostState.SKIPPED)
                row.state = HostState.SKIPPED.value
                row.updated_at = self.now()
            for row in rows:
                self.audit_record(
                    s, "host.state", rollout_id, host=row.name, **{"from": "pending"}, to="skipped", error=""
                )
            return [r.name for r in rows]

    def reacquire_pool(self, rollout_id: str, pool: str) -> None:
        """Take the pool's lock again for a finished rollout that must be rolled back."""
        with self.session() as s:
            lock = s.get(PoolLockRow, pool, with_for_update=True)
            if lock is not None and lock.rollout_id != rollout_id:
                raise RolloutRefused(
                    f"pool {pool} is being updated by rollout {lock.rollout_id}; "
                    f"roll back {rollout_id} once it is over"
                )
            if lock is None:
                s.add(PoolLockRow(pool=pool, rollout_id=rollout_id, acquired_at=self.now()))

    # leases and tick tokens
    def new_token(self, rollout_id: str, name: str) -> str:
        """Start a new tick chain for the host; ticks carrying an older token are dropped. Scheduling a
        tick counts as progress, so the reconciler does not restart a chain whose message is on its way."""
        token = secrets.token_hex(8)
        with self.session() as s:
            s.execute(
                update(HostRow)
                .where(HostRow.rollout_id == rollout_id, HostRow.name == name)
                .values(token=token, updated_at=self.now())
            )
        return token

    def claim_host(
        self,
        rollout_id: str,
        name: str,
        token: str,
        owner: str,
        ttl: float,
        *,
        alive: Callable[[str], bool] = lambda _owner: True,
    ) -> str:
        """Take the host's lease for one tick: "claimed"; "stale" when the token is not the current one
        (a duplicate delivery); "busy" when another live owner holds the lease."""
        t = self.now()
        with self.session() as s:
            row = s.get(HostRow, (rollout_id, name), with_for_update=True)
            if row is None or row.token != token:
                return "stale"
            held = row.lease_owner is not None and row.lease_owner != owner and (row.lease_until or 0) > t
            if held and row.lease_owner is not None and alive(row.lease_owner):
                return "busy"
            row.lease_owner = owner
            row.lease_until = t + ttl
            return "claimed"

    def extend_lease(self, rollout_id: str, name: str, owner: str, seconds: float) -> None:
        with self.session() as s:
            s.execute(
                update(HostRow)
                .where(HostRow.rollout_id == rollout_id, HostRow.name == name, HostRow.lease_owner == owner)
                .values(lease_until=self.now() + seconds)
            )

    def release_host(self, rollout_id: str, name: str, owner: str) -> None:
        with self.session() as s:
            s.execute(
                update(HostRow)
                .where(HostRow.rollout_id == rollout_id, HostRow.name == name, HostRow.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def stalled_hosts(
        self, rollout_id: str, *, quiet_for: float, alive: Callable[[str], bool] = lambda _owner: True
    ) -> list[str]:
        """Hosts in flight that made no progress for ``quiet_for`` seconds and that nobody live holds;
        also pending hosts whose tick chain was started (a token) but whose first tick never came (its
        message lost between the batch's claim and the broker): those get twice as long, since a host
        waiting at its gate saves progress only at every look (up to a minute apart)."""
        t = self.now()
        done = [x.value for x in TERMINAL] + [HostState.PENDING.value]
        with self.session() as s:
            rows = s.scalars(
                select(HostRow).where(
                    HostRow.rollout_id == rollout_id,
                    or_(
                        and_(HostRow.state.not_in(done), HostRow.updated_at <= t - quiet_for),
                        and_(
                            HostRow.state == HostState.PENDING.value,
                            HostRow.token != "",
                            HostRow.updated_at <= t - (max(2 * quiet_for, 120.0) if quiet_for else 0.0),
                        ),
                    ),
                )
            )
            return [
                r.name
                for r in rows
                if r.lease_owner is None or (r.lease_until or 0) < t or not alive(r.lease_owner)
            ]

    # journal
    def step_started(
        self, rollout_id: str, host: str, step: str, detail: str = "", *, command: str = ""
    ) -> int:
        """A step attempt begins. ``command``: what runs on the server (secrets as tokens): the audit
        log keeps its SHA-256, the journal its label."""
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
                rollout_id=rollout_id,
                host=host,
                step=step,
                attempt=attempt,
                started_at=self.now(),
                detail=detail,
                command_sha256=hashlib.sha256(command.encode()).hexdigest() if command else None,
            )
            s.add(row)
            s.flush()
            self.audit_record(
                s,
                "step.started",
                rollout_id,
                step_id=row.id,
                host=host,
                step=step,
                attempt=attempt,
                detail=detail,
                command_sha256=row.command_sha256,
            )
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
        output_sha256: str = "",
    ) -> None:
        """A step attempt ends. ``output_sha256``: of the command's whole output, for the audit log."""
        with self.session() as s:
            values: dict[str, Any] = {
                "ended_at": self.now(),
                "outcome": outcome,
                "work": work,
                "exit_code": exit_code,
                "output_tail": output_tail[-2000:],
                "output_sha256": output_sha256 or None,
            }
            if detail:
                values["detail"] = detail
            s.execute(update(StepRow).where(StepRow.id == step_id).values(**values))
            row = s.get(StepRow, step_id)
            self.audit_record(
                s,
                "step.ended",
                row.rollout_id if row else None,
                step_id=step_id,
                host=row.host if row else "",
                step=row.step if row else "",
                attempt=row.attempt if row else 0,
                outcome=outcome,
                detail=detail or (row.detail if row else ""),
                exit_code=exit_code,
                output_sha256=output_sha256 or None,
            )

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
                    r.command_sha256,
                    r.output_sha256,
                )
                for r in rows
            ]


def _last_progress(s: Session, row: RolloutRow, at: float) -> float:
    """The latest sign of life of a rollout: a host saved, a step started or ended, an operator's action.
    A host whose lease is in force counts as progress now: a live worker holds it through a long step
    (a 10-minute update command writes nothing, but its worker extends the lease over it)."""
    updated, lease = s.execute(
        select(func.max(HostRow.updated_at), func.max(HostRow.lease_until)).where(
            HostRow.rollout_id == row.id
        )
    ).one()
    started, ended = s.execute(
        select(func.max(StepRow.started_at), func.max(StepRow.ended_at)).where(StepRow.rollout_id == row.id)
    ).one()
    acted = s.execute(select(func.max(ActionRow.at)).where(ActionRow.rollout_id == row.id)).scalar()
    if lease is not None and lease > at:
        return at
    times = [updated, started, ended, acted, row.started_at, row.created_at]
    return max(float(t) for t in times if t is not None)


def _transition(
    s: Session,
    row: RolloutRow,
    to: RolloutState,
    at: float,
    *,
    reason: str | None,
    cause: PauseCause | None = None,
) -> None:
    """The row's change; Store._transition also records it."""
    check_rollout_transition(RolloutState(row.state), to)
    row.state = to.value
    row.pause_cause = cause.value if cause is not None else None
    if reason is not None:
        row.reason = reason
    elif to is RolloutState.RUNNING:
        row.reason = ""  # running again: the pause's reason no longer holds
    if to is RolloutState.RUNNING and row.started_at is None:
        row.started_at = at  # a resume keeps the original start
    if to in ROLLOUT_DONE:
        row.finished_at = at
        s.execute(delete(PoolLockRow).where(PoolLockRow.rollout_id == row.id))
    elif to is RolloutState.ROLLING_BACK:
        row.finished_at = None


@functools.lru_cache(maxsize=256)
def _spec(spec_json: str) -> RolloutSpec:
    """A stored spec never changes: parse each once per process, not at every read of its rollout."""
    return RolloutSpec.model_validate_json(spec_json)


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
        spec=_spec(row.spec_json),
        pause_cause=PauseCause(row.pause_cause) if row.pause_cause else None,
    )
