"""``graph_subscriptions``: the Graph change-notification subscriptions a watcher made, so a restart (even
after ``kill -9``) or a new lease holder reuses or deletes them instead of leaking them at Microsoft until
they expire. The clientState secret is stored only as an HMAC-SHA256 keyed by the subscription id.

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_subscriptions",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("client_state_hash", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=400), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_graph_subscriptions")),
        sa.UniqueConstraint("mailbox", "folder_id", name=op.f("uq_graph_subscriptions_mailbox_folder_id")),
    )


def downgrade() -> None:
    op.drop_table("graph_subscriptions")
