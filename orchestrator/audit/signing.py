"""The store's checkpointer: signs the log's root with the key named in the settings and writes each
signed checkpoint outside the store, because a log that lives only in its own database cannot prove
it was not rewritten (point ORCH_AUDIT_CHECKPOINTS at storage the database's users cannot rewrite)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from orchestrator.audit.checkpoint import (
    Checkpoint,
    Signer,
    create_key_file,
    load_signer,
    sign,
    unverified,
    verifier_text,
)
from orchestrator.errors import ConfigError

log = logging.getLogger(__name__)


def key_name(origin: str) -> str:
    """A signed-note key name from the origin (no whitespace, no '+')."""
    return "".join(c if c.isalnum() or c in "./-_" else "-" for c in origin) or "orchestrator"


def init_key(key_file: Path, origin: str) -> tuple[str, bool]:
    """The key's verifier text, and whether it was created now."""
    try:
        return create_key_file(key_file, key_name(origin)), True
    except FileExistsError:
        return verifier_text(_load(key_file)), False


def _load(key_file: Path) -> Signer:
    try:
        return load_signer(key_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ORCH_AUDIT_KEY: {exc}; `orchestrator audit init` makes a new key") from None


def private_write(path: Path, text: str) -> None:
    """Write whole or not at all (a reader never sees half a checkpoint), owner-only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class FileCheckpointer:
    """Signs with the key in ``key_file`` (created on first use, 0600, if missing: a fresh install
    is signed from its first rollout) and exports to ``folder`` as ``<size>.checkpoint`` plus
    ``latest.checkpoint``."""

    def __init__(self, key_file: Path, folder: Path, origin: str, every: int = 1000) -> None:
        self.key_file = key_file
        self.folder = folder
        self.origin = origin
        self.every = every
        self._signer: Signer | None = None
        self._lock = threading.Lock()

    def signer(self) -> Signer:
        with self._lock:
            if self._signer is None:
                if not self.key_file.exists():
                    verifier, created = init_key(self.key_file, self.origin)
                    if created:
                        log.warning(
                            "audit: created the signing key %s; verifier key: %s", self.key_file, verifier
                        )
                self._signer = _load(self.key_file)
            return self._signer

    def verifier(self) -> str:
        return verifier_text(self.signer())

    def sign(self, size: int, root: bytes) -> str:
        return sign(Checkpoint(self.origin, size, root), self.signer())

    def export(self, size: int, note: str) -> str:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{size:012d}.checkpoint"
        private_write(path, note)
        latest = self.folder / "latest.checkpoint"
        # Exports run after their commits, so two workers may export out of order: under a lock on
        # the folder (every process of every worker on this machine), the larger size stays latest.
        with _locked(self.folder / ".lock"):
            if _size_in(latest) <= size:
                private_write(latest, note)
        return str(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _size_in(path: Path) -> int:
    try:
        return unverified(path.read_text(encoding="utf-8")).size
    except (OSError, IndexError, ValueError):
        return -1


def exported(folder: Path) -> list[Path]:
    """The checkpoint files in an export folder, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.checkpoint") if p.name != "latest.checkpoint")
