"""Hardening: ``activity_links.fingerprint`` (the tracked mail's content fingerprint: a different mail that
reuses its Message-ID is a collision, never an overwrite), ``activity_links.arrived_at`` (when the tracked
copy arrived in its folder by the server's clock: of two copies in one mailbox the later one decides the
regarding, whatever order the folders are caught up in) and ``key_collisions`` (each such mail, once).

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("activity_links", sa.Column("fingerprint", sa.String(length=64), nullable=True))
    op.add_column("activity_links", sa.Column("arrived_at", TIMESTAMP, nullable=True))
    op.create_table(
        "key_collisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_key", sa.String(length=1000), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("item_id", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("kept_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_collisions")),
        sa.UniqueConstraint(
            "mailbox", "folder_id", "item_id", name=op.f("uq_key_collisions_mailbox_folder_id_item_id")
        ),
    )
    op.create_index(op.f("ix_key_collisions_activity_key"), "key_collisions", ["activity_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_key_collisions_activity_key"), table_name="key_collisions")
    op.drop_table("key_collisions")
    with op.batch_alter_table("activity_links") as batch:
        batch.drop_column("arrived_at")
        batch.drop_column("fingerprint")
