"""Settings, merged once: defaults -> ORCH_* environment -> command line. Adapters never read the
environment; they get what they need from here through their constructors."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str | None  # None: run an in-process worker over an in-memory broker
    worker_concurrency: int = 4
    queue: str = "orchestrator"  # the broker queue workers consume; separate farms use separate queues
    reconcile_every: float = 5.0  # seconds between reconciler rounds in each worker
    reconcile_after: float = (
        30.0  # a host in flight with no progress this long, and nobody holding it, is resumed
    )
    lock_stale_after: float = 600.0  # a pool lock whose rollout made no progress this long may be taken over
    store_outage_budget: float = 600.0  # how long the engine waits for a store that does not answer
    # The audit log's signing key (created 0600 on first use), where signed checkpoints are exported,
    # the log's name in them, and every how many records a checkpoint is signed besides each
    # rollout's end.
    audit_key: Path | None = None  # None: HOME/audit/signing.key
    audit_checkpoints: Path | None = None  # None: HOME/audit/checkpoints
    audit_origin: str = "orchestrator/audit"
    audit_checkpoint_every: int = 1000
    lb_sample_every: float = 1.0  # seconds between availability samples of a running rollout's pool

    @property
    def in_process(self) -> bool:
        return self.broker_url is None

    @property
    def audit_key_file(self) -> Path:
        return self.audit_key or self.home / "audit" / "signing.key"

    @property
    def audit_folder(self) -> Path:
        return self.audit_checkpoints or self.home / "audit" / "checkpoints"


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number; a number above 0, e.g. {default:g}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{name}: {text!r} is not a finite number above 0; a number above 0, e.g. {default:g}"
        )
    return value


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(f"{name}: {text!r} is not a whole number above 0; a whole number, e.g. {default}")
    return int(text)


def _origin(text: str) -> str:
    """A checkpoint's first line: printable, no spaces (C2SP tlog-checkpoint origin)."""
    if not text.isprintable() or " " in text or len(text) > 200:
        raise ConfigError(
            f"ORCH_AUDIT_ORIGIN: {text[:80]!r} is not a log name; printable text without spaces, "
            "e.g. hospital.example/orchestrator"
        )
    return text


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("ORCH_HOME") or Path.home() / ".local/state/orchestrator")
    database_url = env.get("ORCH_DATABASE_URL") or f"sqlite:///{home / 'orchestrator.db'}"
    broker_url = env.get("ORCH_BROKER_URL") or None
    concurrency = _whole(env, "ORCH_WORKER_CONCURRENCY", 4)
    settings = Settings(
        home=home,
        database_url=database_url,
        broker_url=broker_url,
        worker_concurrency=concurrency,
        queue=env.get("ORCH_QUEUE") or Settings.queue,
        reconcile_every=_number(env, "ORCH_RECONCILE_EVERY", Settings.reconcile_every),
        reconcile_after=_number(env, "ORCH_RECONCILE_AFTER", Settings.reconcile_after),
        lock_stale_after=_number(env, "ORCH_LOCK_STALE_AFTER", Settings.lock_stale_after),
        store_outage_budget=_number(env, "ORCH_STORE_OUTAGE_BUDGET", Settings.store_outage_budget),
        audit_key=Path(env["ORCH_AUDIT_KEY"]) if env.get("ORCH_AUDIT_KEY") else None,
        audit_checkpoints=Path(env["ORCH_AUDIT_CHECKPOINTS"]) if env.get("ORCH_AUDIT_CHECKPOINTS") else None,
        audit_origin=_origin(env.get("ORCH_AUDIT_ORIGIN") or Settings.audit_origin),
        audit_checkpoint_every=_whole(env, "ORCH_AUDIT_CHECKPOINT_EVERY", Settings.audit_checkpoint_every),
        lb_sample_every=_number(env, "ORCH_LB_SAMPLE_EVERY", Settings.lb_sample_every),
    )
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
