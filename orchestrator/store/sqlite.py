"""What the store does differently on SQLite: a private file, transactions that hold across processes,
and a disk that fills up or turns read-only under it on the user's own machine."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError

# Room a write needs beyond the file itself: SQLite's write-ahead log grows up to its auto-checkpoint
# (1000 pages of 4 KiB) before it is folded back. Below this, writes are refused up front: on a
# nearly full disk some writes would fit into pages SQLite already holds and others would not, and the
# rollout would lurch on and off instead of holding until someone frees space.
RESERVE = 4 * 1024 * 1024


def path_of(url: str) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory one."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def private_file(db: Path) -> None:
    """SQLite's folder 0700 and files 0600 (the database, -wal, -shm): they hold inventories' hosts,
    users and the commands run. SQLite gives -wal and -shm the database file's own permissions."""
    if not db.parent.exists():
        db.parent.mkdir(mode=0o700, parents=True)
    if not db.exists():
        os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)


def make_engine(url: str) -> Engine:
    db = path_of(url)
    if db is not None:
        private_file(db)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _pragmas)
    # The driver would open a transaction only at the first write, so a read-then-write (every
    # compare-and-set here) would read outside it and two processes could both win. We begin each
    # transaction ourselves, IMMEDIATE: it takes the write lock first, waiting (busy_timeout) rather
    # than failing with "database is locked" half-way.
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    if db is not None:
        event.listen(engine, "before_cursor_execute", _room_to_write(db.parent))
    return engine


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by the "begin" event above
    # WAL lets the CLI read progress while a worker writes; NORMAL sync is durable across process crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def _room_to_write(folder: Path) -> Any:
    def check(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            free = free_bytes(folder)
            if free < RESERVE:
                full = sqlite3.OperationalError(
                    f"database or disk is full ({free // 1024} KiB free, a write needs {RESERVE // 1024} KiB)"
                )
                raise OperationalError(statement, parameters, full)

    return check


def why(db: Path, found: str) -> str | None:
    """What a user can act on, when the store's file cannot be written: a full disk or a read-only
    filesystem. None when it is neither."""
    try:
        # SQLite says "disk I/O error" when the full disk is met creating its -wal or -shm file
        full = "full" in found.lower() or free_bytes(db.parent) < RESERVE
    except OSError:
        full = False
    if full:
        return f"the disk under the store is full ({found}); free space there"
    if "i/o error" in found.lower():
        # what a filesystem the kernel turned read-only after an error looks like (ext4 emergency_ro)
        return f"the disk under the store fails ({found}); check it (dmesg): it may have turned read-only"
    try:
        if os.statvfs(db.parent).f_flag & os.ST_RDONLY:
            return f"the filesystem under the store is read-only ({found}); remount it read-write"
    except OSError:
        pass
    return None
