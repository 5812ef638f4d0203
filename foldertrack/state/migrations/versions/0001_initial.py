"""Initial schema: watcher state (tracked folders, ledger, activity links, conflicts, dead letters,
subscription health, mailbox leases) and the SQL sink (records, record e-mails, activities, parties,
attachments).

Written out in full rather than importing ``foldertrack.state.schema``, so this revision stays what it was
when later revisions change the tables. Times are ``TIMESTAMP WITH TIME ZONE`` (``UtcDateTime``'s impl).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("key", sa.String(length=1000), nullable=False),
        sa.Column("message_id", sa.String(length=1000), nullable=True),
        sa.Column("conversation_id", sa.String(length=512), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("received_at", TIMESTAMP, nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("folder_path", sa.Text(), nullable=False),
        sa.Column("regarding_type", sa.String(length=32), nullable=True),
        sa.Column("regarding_id", sa.String(length=100), nullable=True),
        sa.Column("regarding_name", sa.String(length=400), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tracked_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("direction IN ('incoming', 'outgoing')", name=op.f("ck_activities_direction")),
        sa.CheckConstraint("state IN ('tracked', 'untracked')", name=op.f("ck_activities_state")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_activities")),
    )
    op.create_index(op.f("ix_activities_mailbox"), "activities", ["mailbox"], unique=False)
    op.create_index(
        op.f("ix_activities_regarding_type_regarding_id"),
        "activities",
        ["regarding_type", "regarding_id"],
        unique=False,
    )

    op.create_table(
        "activity_links",
        sa.Column("activity_key", sa.String(length=1000), nullable=False),
        sa.Column("owner_mailbox", sa.String(length=320), nullable=False),
        sa.Column("owner_folder_id", sa.String(length=512), nullable=False),
        sa.Column("regarding_type", sa.String(length=32), nullable=True),
        sa.Column("regarding_id", sa.String(length=100), nullable=True),
        sa.Column("regarding_name", sa.String(length=400), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("state IN ('tracked', 'untracked')", name=op.f("ck_activity_links_state")),
        sa.PrimaryKeyConstraint("activity_key", name=op.f("pk_activity_links")),
    )
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_key", sa.String(length=1000), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("kept_regarding", sa.String(length=400), nullable=True),
        sa.Column("other_regarding", sa.String(length=400), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("policy IN ('first_wins', 'last_wins')", name=op.f("ck_conflicts_policy")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflicts")),
    )
    op.create_index(op.f("ix_conflicts_activity_key"), "conflicts", ["activity_key"], unique=False)

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("item_id", sa.String(length=512), nullable=False),
        sa.Column("mail_key", sa.String(length=1000), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", TIMESTAMP, nullable=False),
        sa.Column("last_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.CheckConstraint("status IN ('retrying', 'dead', 'replayed')", name=op.f("ck_dead_letters_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "mailbox", "folder_id", "item_id", name=op.f("uq_dead_letters_mailbox_folder_id_item_id")
        ),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("mail_key", sa.String(length=1000), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("item_id", sa.String(length=512), nullable=False),
        sa.Column("activity_key", sa.String(length=1000), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("state IN ('present', 'left')", name=op.f("ck_ledger_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger")),
        sa.UniqueConstraint(
            "mailbox", "mail_key", "folder_id", name=op.f("uq_ledger_mailbox_mail_key_folder_id")
        ),
    )
    op.create_index(op.f("ix_ledger_activity_key"), "ledger", ["activity_key"], unique=False)
    op.create_index(op.f("ix_ledger_mailbox_item_id"), "ledger", ["mailbox", "item_id"], unique=False)

    op.create_table(
        "mailbox_leases",
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("owner", sa.String(length=400), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_leases")),
    )
    op.create_table(
        "records",
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("number", sa.String(length=100), nullable=True),
        sa.Column("name_folded", sa.String(length=400), nullable=False),
        sa.Column("number_folded", sa.String(length=100), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("type", "id", name=op.f("pk_records")),
    )
    op.create_index(op.f("ix_records_name_folded"), "records", ["name_folded"], unique=False)
    op.create_index(op.f("ix_records_number_folded"), "records", ["number_folded"], unique=False)

    op.create_table(
        "subscription_health",
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("instance", sa.String(length=400), nullable=True),
        sa.Column("last_event_at", TIMESTAMP, nullable=True),
        sa.Column("last_sync_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "mode IN ('starting', 'streaming', 'polling', 'error', 'stopped')",
            name=op.f("ck_subscription_health_mode"),
        ),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_subscription_health")),
    )
    op.create_table(
        "tracked_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("configured_path", sa.Text(), nullable=False),
        sa.Column("current_path", sa.Text(), nullable=False),
        sa.Column("rule_source", sa.String(length=400), nullable=False),
        sa.Column("parent_rule_path", sa.Text(), nullable=True),
        sa.Column("sync_state", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("backfill_done", sa.Boolean(), nullable=False),
        sa.Column("last_sync_at", TIMESTAMP, nullable=True),
        sa.Column("last_event_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'stale_path', 'deleted', 'retired')", name=op.f("ck_tracked_folders_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_folders")),
        sa.UniqueConstraint("mailbox", "folder_id", name=op.f("uq_tracked_folders_mailbox_folder_id")),
    )
    op.create_table(
        "activity_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_key", sa.String(length=1000), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("content_type", sa.String(length=400), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.Column("is_inline", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_key"],
            ["activities.key"],
            name=op.f("fk_activity_attachments_activity_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_attachments")),
    )
    op.create_index(
        op.f("ix_activity_attachments_activity_key"), "activity_attachments", ["activity_key"], unique=False
    )

    op.create_table(
        "activity_parties",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_key", sa.String(length=1000), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.Column("record_type", sa.String(length=32), nullable=True),
        sa.Column("record_id", sa.String(length=100), nullable=True),
        sa.CheckConstraint("role IN ('from', 'to', 'cc', 'bcc')", name=op.f("ck_activity_parties_role")),
        sa.ForeignKeyConstraint(
            ["activity_key"],
            ["activities.key"],
            name=op.f("fk_activity_parties_activity_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_parties")),
    )
    op.create_index(
        op.f("ix_activity_parties_activity_key"), "activity_parties", ["activity_key"], unique=False
    )

    op.create_table(
        "record_emails",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("record_type", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_type", "record_id"],
            ["records.type", "records.id"],
            name=op.f("fk_record_emails_record_type_record_id"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "address", "record_type", "record_id", name=op.f("uq_record_emails_address_record_type_record_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("record_emails")
    op.drop_index(op.f("ix_activity_parties_activity_key"), table_name="activity_parties")

    op.drop_table("activity_parties")
    op.drop_index(op.f("ix_activity_attachments_activity_key"), table_name="activity_attachments")

    op.drop_table("activity_attachments")
    op.drop_table("tracked_folders")
    op.drop_table("subscription_health")
    op.drop_index(op.f("ix_records_number_folded"), table_name="records")
    op.drop_index(op.f("ix_records_name_folded"), table_name="records")

    op.drop_table("records")
    op.drop_table("mailbox_leases")
    op.drop_index(op.f("ix_ledger_mailbox_item_id"), table_name="ledger")
    op.drop_index(op.f("ix_ledger_activity_key"), table_name="ledger")

    op.drop_table("ledger")
    op.drop_table("dead_letters")
    op.drop_index(op.f("ix_conflicts_activity_key"), table_name="conflicts")

    op.drop_table("conflicts")
    op.drop_table("activity_links")
    op.drop_index(op.f("ix_activities_regarding_type_regarding_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_mailbox"), table_name="activities")

    op.drop_table("activities")
