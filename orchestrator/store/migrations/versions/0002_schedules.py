"""schedules: rollouts to start later, at a time or at the next maintenance window

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("playbook", sa.Text(), nullable=False),
        sa.Column("inventory", sa.Text(), nullable=False),
        sa.Column("hosts", sa.Text(), nullable=False),
        sa.Column("run_at", sa.Float(), nullable=True),
        sa.Column("next_window", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("rollout_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    # What every reconciler round asks: scheduled rows due by now.
    op.create_index("ix_schedules_state_run_at", "schedules", ["state", "run_at"])


def downgrade() -> None:
    op.drop_index("ix_schedules_state_run_at", table_name="schedules")
    op.drop_table("schedules")
