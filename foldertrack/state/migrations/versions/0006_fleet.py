"""Fleet: ``fleet_instances`` (each watcher process and its heartbeat) and, on ``mailbox_leases``, the
``epoch`` fencing token bumped at every claim and ``acquired_at``; indexes for the keepers' queries.

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mailbox_leases", sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("mailbox_leases", sa.Column("acquired_at", TIMESTAMP, nullable=True))
    op.create_index(op.f("ix_mailbox_leases_owner"), "mailbox_leases", ["owner"])
    op.create_index(op.f("ix_mailbox_leases_expires_at"), "mailbox_leases", ["expires_at"])
    op.create_table(
        "fleet_instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_namespace", sa.String(length=64), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("stopped_at", TIMESTAMP, nullable=True),
        sa.Column("stop_reason", sa.String(length=400), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_instances")),
    )
    op.create_index(op.f("ix_fleet_instances_expires_at"), "fleet_instances", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fleet_instances_expires_at"), table_name="fleet_instances")
    op.drop_table("fleet_instances")
    op.drop_index(op.f("ix_mailbox_leases_expires_at"), table_name="mailbox_leases")
    op.drop_index(op.f("ix_mailbox_leases_owner"), table_name="mailbox_leases")
    with op.batch_alter_table("mailbox_leases") as batch:
        batch.drop_column("acquired_at")
        batch.drop_column("epoch")
