"""The change record: the audit log (records, head, checkpoints), reasons on actions, LB samples

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("reason", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("batch", sa.Integer, nullable=True))
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("command_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("output_sha256", sa.String(64), nullable=True))
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("change_ticket", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("rollout_id", sa.String(64), nullable=True, index=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("leaf", sa.String(64), nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("frontier_json", sa.Text, nullable=False),
    )
    # The one row every append locks; it must exist before the first append races to create it.
    # An empty frontier_json: the empty tree.
    op.bulk_insert(head, [{"id": 1, "size": 0, "frontier_json": ""}])
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("exported", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "lb_samples",
        sa.Column("rollout_id", sa.String(64), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("in_service", sa.Integer, nullable=False),
        sa.Column("servers", sa.Integer, nullable=False),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("servers_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("lb_samples", "audit_checkpoints", "audit_head", "audit_records"):
        op.drop_table(table)
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("output_sha256")
        batch.drop_column("command_sha256")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("reason")
        batch.drop_column("change_ticket")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("batch")
        batch.drop_column("reason")
