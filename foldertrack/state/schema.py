"""The state store's tables, as SQLAlchemy Core: one ``metadata`` for the watcher's state and the SQL sink.

The Alembic migrations build exactly these tables; a test compares the two, so a change here needs
a new migration. All times are aware UTC (:class:`UtcDateTime`). Enumerations are plain strings guarded by
CHECK constraints, so adding a value is a small migration rather than a type change.

Lengths are chosen so every unique key fits a PostgreSQL btree entry (at most ~2,700 bytes): the ledger's
``(mailbox, mail_key, folder_id)`` is at most 320 + 1,000 + 512 characters. ``mail_key``/``activity_key`` is
the normalised Internet Message-ID (ASCII; RFC 5322 caps a line at 998 characters) or a 64-character hash,
so 1,000 characters hold every real key; a longer value is refused by PostgreSQL rather than truncated.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from foldertrack.state.types import UtcDateTime, utcnow

MAILBOX_LEN = 320  # RFC 5321 maximum address length
FOLDER_ID_LEN = 512  # EWS folder ids are ~150-200 base64 characters
ITEM_ID_LEN = 512
KEY_LEN = 1000  # mail key / activity key, see the module docstring
RECORD_TYPE_LEN = 32
RECORD_ID_LEN = 100  # RecordRef ids are 1-100 characters
NAME_LEN = 400
WORD_LEN = 16  # status words

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _one_of(column: str, *values: str) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


def _created() -> Column:
    return Column("created_at", UtcDateTime, nullable=False, default=utcnow)


def _updated() -> Column:
    return Column("updated_at", UtcDateTime, nullable=False, default=utcnow, onupdate=utcnow)


# --- watcher state -------------------------------------------------------------------------------------

tracked_folders = Table(
    "tracked_folders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),  # lower-case
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("configured_path", Text, nullable=False),
    Column("current_path", Text, nullable=False),
    Column("rule_source", String(NAME_LEN), nullable=False),  # "file:line"
    Column("parent_rule_path", Text, nullable=True),  # set for pattern / include_subfolders folders
    Column("sync_state", Text, nullable=True),  # opaque SyncFolderItems state
    Column("status", String(WORD_LEN), nullable=False, default="active"),
    Column("backfill_done", Boolean, nullable=False, default=False),
    Column("last_sync_at", UtcDateTime, nullable=True),
    Column("last_event_at", UtcDateTime, nullable=True),
    _created(),
    _updated(),
    UniqueConstraint("mailbox", "folder_id"),
    _one_of("status", "active", "stale_path", "deleted", "retired"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("mail_key", String(KEY_LEN), nullable=False),
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("item_id", String(ITEM_ID_LEN), nullable=False),  # current EWS ItemId in that folder
    Column("activity_key", String(KEY_LEN), nullable=False),
    Column("state", String(WORD_LEN), nullable=False, default="present"),
    Column("first_seen_at", UtcDateTime, nullable=False, default=utcnow),
    _updated(),
    UniqueConstraint("mailbox", "mail_key", "folder_id"),
    Index(None, "mailbox", "item_id"),
    Index(None, "activity_key"),
    _one_of("state", "present", "left"),
)

activity_links = Table(
    "activity_links",
    metadata,
    Column("activity_key", String(KEY_LEN), primary_key=True),
    Column("owner_mailbox", String(MAILBOX_LEN), nullable=False),
    Column("owner_folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("regarding_type", String(RECORD_TYPE_LEN), nullable=True),
    Column("regarding_id", String(RECORD_ID_LEN), nullable=True),
    Column("regarding_name", String(NAME_LEN), nullable=True),
    Column("state", String(WORD_LEN), nullable=False, default="tracked"),
    _created(),
    _updated(),
    _one_of("state", "tracked", "untracked"),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("activity_key", String(KEY_LEN), nullable=False),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("policy", String(WORD_LEN), nullable=False),
    Column("kept_regarding", String(NAME_LEN), nullable=True),  # "type:id"
    Column("other_regarding", String(NAME_LEN), nullable=True),
    Column("at", UtcDateTime, nullable=False, default=utcnow),
    Index(None, "activity_key"),
    _one_of("policy", "first_wins", "last_wins"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("item_id", String(ITEM_ID_LEN), nullable=False),
    Column("mail_key", String(KEY_LEN), nullable=True),
    Column("subject", Text, nullable=True),
    Column("error", Text, nullable=False),  # never holds secrets
    Column("attempts", Integer, nullable=False, default=0),
    Column("first_failed_at", UtcDateTime, nullable=False, default=utcnow),
    Column("last_attempt_at", UtcDateTime, nullable=False, default=utcnow),
    Column("status", String(WORD_LEN), nullable=False, default="retrying"),
    UniqueConstraint("mailbox", "folder_id", "item_id"),
    _one_of("status", "retrying", "dead", "replayed"),
)

subscription_health = Table(
    "subscription_health",
    metadata,
    Column("mailbox", String(MAILBOX_LEN), primary_key=True),
    Column("mode", String(WORD_LEN), nullable=False, default="starting"),
    Column("instance", String(NAME_LEN), nullable=True),
    Column("last_event_at", UtcDateTime, nullable=True),
    Column("last_sync_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    _updated(),
    # queued or running catch-ups of the mailbox, written by the watcher's timer (0002)
    Column("backlog", Integer, nullable=False, default=0, server_default="0"),
    _one_of("mode", "starting", "streaming", "polling", "error", "stopped"),
)

#: what ``RuleIssue.kind`` may be (foldertrack.targets)
RULE_ISSUE_KINDS: tuple[str, ...] = (
    "stale_path",
    "folder_deleted",
    "folder_not_found",
    "no_match",
    "record_not_found",
)

rule_issues = Table(
    "rule_issues",
    metadata,
    # a rule's drift or breakage found when the watcher last resolved the mailbox's folders; the mailbox's
    # rows are replaced on every resolve, so the table always shows the current problems (0002)
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("rule_source", String(NAME_LEN), nullable=False),  # "file:line"
    Column("kind", String(32), nullable=False),
    Column("path", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False, default=utcnow),
    Index(None, "mailbox"),
    _one_of("kind", *RULE_ISSUE_KINDS),
)

mailbox_leases = Table(
    "mailbox_leases",
    metadata,
    Column("mailbox", String(MAILBOX_LEN), primary_key=True),
    Column("owner", String(NAME_LEN), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False, default=utcnow),
)

# --- SQL sink: record directory and activities ---------------------------------------------------------

records = Table(
    "records",
    metadata,
    Column("type", String(RECORD_TYPE_LEN), primary_key=True),
    Column("id", String(RECORD_ID_LEN), primary_key=True),
    Column("name", String(NAME_LEN), nullable=False),
    Column("number", String(RECORD_ID_LEN), nullable=True),
    # casefolded copies, because SQLite's lower() only folds ASCII
    Column("name_folded", String(NAME_LEN), nullable=False),
    Column("number_folded", String(RECORD_ID_LEN), nullable=True),
    _created(),
    _updated(),
    Index(None, "name_folded"),
    Index(None, "number_folded"),
)

record_emails = Table(
    "record_emails",
    metadata,
    Column("address", String(MAILBOX_LEN), nullable=False),  # lower-case
    Column("record_type", String(RECORD_TYPE_LEN), nullable=False),
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    UniqueConstraint("address", "record_type", "record_id"),
    ForeignKeyConstraint(["record_type", "record_id"], ["records.type", "records.id"], ondelete="CASCADE"),
)

activities = Table(
    "activities",
    metadata,
    Column("key", String(KEY_LEN), primary_key=True),  # Activity.key
    Column("message_id", String(KEY_LEN), nullable=True),
    Column("conversation_id", String(ITEM_ID_LEN), nullable=True),
    Column("subject", Text, nullable=True),
    Column("text_body", Text, nullable=True),
    Column("html_body", Text, nullable=True),
    Column("sender", String(MAILBOX_LEN), nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("received_at", UtcDateTime, nullable=True),
    Column("direction", String(WORD_LEN), nullable=False),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("folder_path", Text, nullable=False),
    Column("regarding_type", String(RECORD_TYPE_LEN), nullable=True),
    Column("regarding_id", String(RECORD_ID_LEN), nullable=True),
    Column("regarding_name", String(NAME_LEN), nullable=True),
    Column("state", String(WORD_LEN), nullable=False),
    Column("tracked_at", UtcDateTime, nullable=False, default=utcnow),
    _updated(),
    Index(None, "regarding_type", "regarding_id"),
    Index(None, "mailbox"),
    _one_of("direction", "incoming", "outgoing"),
    _one_of("state", "tracked", "untracked"),
)

activity_parties = Table(
    "activity_parties",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "activity_key",
        String(KEY_LEN),
        ForeignKey("activities.key", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("position", Integer, nullable=False),  # order within the mail's headers
    Column("role", String(WORD_LEN), nullable=False),
    Column("address", String(MAILBOX_LEN), nullable=False),
    Column("name", String(NAME_LEN), nullable=True),
    Column("record_type", String(RECORD_TYPE_LEN), nullable=True),
    Column("record_id", String(RECORD_ID_LEN), nullable=True),
    _one_of("role", "from", "to", "cc", "bcc"),
)

activity_attachments = Table(
    "activity_attachments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "activity_key",
        String(KEY_LEN),
        ForeignKey("activities.key", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("position", Integer, nullable=False),
    Column("name", String(NAME_LEN), nullable=False),
    Column("content_type", String(NAME_LEN), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=True),  # None when larger than max_attachment_bytes
    Column("content_sha256", String(64), nullable=True),  # compare without loading content
    Column("stored", Boolean, nullable=False),
    Column("is_inline", Boolean, nullable=False, default=False),
)
