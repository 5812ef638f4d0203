"""``watcher_warnings``: instance-wide problems ``status`` and ``/healthz`` report until they clear (a failed
rules reload, a rules directory without rule files); ``tracked_folders.backfill_total`` (items in the folder
when its first sync began: the backfill progress ``status`` shows).

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tracked_folders", sa.Column("backfill_total", sa.Integer(), nullable=True))
    op.create_table(
        "watcher_warnings",
        sa.Column("instance", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("instance_name", sa.String(length=400), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("since", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "kind IN ('rules_reload_failed', 'no_rule_files')", name=op.f("ck_watcher_warnings_kind")
        ),
        sa.PrimaryKeyConstraint("instance", "kind", name=op.f("pk_watcher_warnings")),
    )


def downgrade() -> None:
    op.drop_table("watcher_warnings")
    with op.batch_alter_table("tracked_folders") as batch:
        batch.drop_column("backfill_total")
