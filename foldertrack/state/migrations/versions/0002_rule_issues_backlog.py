"""Drift in ``status``: the ``rule_issues`` table (what the watcher found wrong with each mailbox's rules
when it last resolved its folders) and ``subscription_health.backlog`` (queued catch-ups).

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_KINDS = ("stale_path", "folder_deleted", "folder_not_found", "no_match", "record_not_found")


def upgrade() -> None:
    op.create_table(
        "rule_issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("rule_source", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "kind IN ({})".format(", ".join(f"'{k}'" for k in _KINDS)), name=op.f("ck_rule_issues_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_issues")),
    )
    op.create_index(op.f("ix_rule_issues_mailbox"), "rule_issues", ["mailbox"], unique=False)
    with op.batch_alter_table("subscription_health") as batch:
        batch.add_column(sa.Column("backlog", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("subscription_health") as batch:
        batch.drop_column("backlog")
    op.drop_index(op.f("ix_rule_issues_mailbox"), table_name="rule_issues")
    op.drop_table("rule_issues")
