"""Records sync from Dataverse: ``records_sync`` (the delta link each CRM table continues from) and
``synced_records`` (which directory records came from the CRM).

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records_sync",
        sa.Column("record_type", sa.String(length=32), nullable=False),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("synced_at", TIMESTAMP, nullable=True),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("record_type", name=op.f("pk_records_sync")),
    )
    op.create_table(
        "synced_records",
        sa.Column("record_type", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_type", "record_id"],
            ["records.type", "records.id"],
            name=op.f("fk_synced_records_record_type_record_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_type", "record_id", name=op.f("pk_synced_records")),
    )


def downgrade() -> None:
    op.drop_table("synced_records")
    op.drop_table("records_sync")
