"""Alembic environment: run with a connection handed in by orchestrator.store.migrate."""

from __future__ import annotations

from alembic import context

import orchestrator.store.schedules  # noqa: F401  (puts its table in Base.metadata)
from orchestrator.store.schema import Base

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables there, a no-op on PostgreSQL.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
