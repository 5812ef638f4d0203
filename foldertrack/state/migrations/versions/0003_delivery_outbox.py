"""Delivery to external sinks: the ``outbox`` (one entry per tracking decision, written in the sync
transaction), ``sink_health`` (is delivery moving) and ``activities.deleted_at`` (``on_leave: delete``
removed the CRM copy; the local activity is kept).

Written out rather than importing ``foldertrack.state.schema``, like 0001.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _one_of(table: str, column: str, *values: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(length=64), nullable=False),
        sa.Column("mail_key", sa.String(length=1000), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("send_options", sa.Text(), nullable=True),
        sa.Column("partition_no", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("claimed_by", sa.String(length=400), nullable=True),
        sa.Column("claimed_until", TIMESTAMP, nullable=True),
        _one_of("outbox", "op", "upsert", "untrack", "delete"),
        _one_of("outbox", "status", "pending", "delivered", "dead"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        op.f("ix_outbox_sink_status_next_attempt_at"), "outbox", ["sink", "status", "next_attempt_at"]
    )
    op.create_index(op.f("ix_outbox_sink_mail_key_id"), "outbox", ["sink", "mail_key", "id"])
    op.create_index(op.f("ix_outbox_status_delivered_at"), "outbox", ["status", "delivered_at"])
    op.create_table(
        "sink_health",
        sa.Column("sink", sa.String(length=64), nullable=False),
        sa.Column("last_success_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", TIMESTAMP, nullable=True),
        sa.Column("failing_since", TIMESTAMP, nullable=True),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.Column("dead", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("sink", name=op.f("pk_sink_health")),
    )
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("deleted_at", TIMESTAMP, nullable=True))
    op.create_table(
        "mailbox_feedback",
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("confirmed", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_feedback")),
    )


def downgrade() -> None:
    op.drop_table("mailbox_feedback")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("deleted_at")
    op.drop_table("sink_health")
    op.drop_index(op.f("ix_outbox_status_delivered_at"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_sink_mail_key_id"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_sink_status_next_attempt_at"), table_name="outbox")
    op.drop_table("outbox")
