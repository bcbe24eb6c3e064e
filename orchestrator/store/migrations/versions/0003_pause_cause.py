"""rollouts.pause_cause: why a rollout is paused, as a field (it was read from the reason's first words)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("pause_cause", sa.String(20), nullable=True))
    # Rollouts paused before this migration: the cause is recovered once, here, from the words the
    # code of that time wrote. Nothing reads reason text after this.
    rollouts = sa.table(
        "rollouts",
        sa.column("state", sa.String),
        sa.column("reason", sa.Text),
        sa.column("pause_cause", sa.String),
    )
    paused = rollouts.c.state == "paused"
    op.execute(rollouts.update().where(paused).values(pause_cause="operator"))
    op.execute(
        rollouts.update()
        .where(paused, rollouts.c.reason.like("maintenance window%"))
        .values(pause_cause="window")
    )
    op.execute(
        rollouts.update()
        .where(paused, rollouts.c.reason.like("load balancer unreachable%"))
        .values(pause_cause="loadbalancer")
    )


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("pause_cause")
