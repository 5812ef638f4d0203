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
    # the tracked mail's content fingerprint and its copy's arrival time in the owner folder (H5, 0005)
    Column("fingerprint", String(64), nullable=True),
    Column("arrived_at", UtcDateTime, nullable=True),
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
    # on_leave: delete removed the CRM copy at this time; the local row is kept, untracked (0003)
    Column("deleted_at", UtcDateTime, nullable=True),
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

# --- delivery outbox: decisions waiting for an external sink (0003) -------------------------------------

SINK_NAME_LEN = 64
#: outbox operations (``foldertrack.sinks.base.DeliveryOp``) and entry states
OUTBOX_OPS: tuple[str, ...] = ("upsert", "untrack", "delete")
OUTBOX_STATUSES: tuple[str, ...] = ("pending", "delivered", "dead")

outbox = Table(
    "outbox",
    metadata,
    # one row per tracking decision for a sink other than `sql`, written in the sync transaction; delivery
    # workers apply them in id order per (sink, mail_key), at least once
    Column("id", Integer, primary_key=True),
    Column("sink", String(SINK_NAME_LEN), nullable=False),
    Column("mail_key", String(KEY_LEN), nullable=False),
    Column("op", String(WORD_LEN), nullable=False),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),  # whose decision it was
    Column("send_options", Text, nullable=True),  # JSON {"body": bool, "attachments": bool}
    Column("partition_no", Integer, nullable=False),  # hash of mail_key: which worker delivers it
    Column("status", String(WORD_LEN), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False, default=utcnow),
    Column("last_error", Text, nullable=True),  # the sink's own message, never secrets
    _created(),
    Column("delivered_at", UtcDateTime, nullable=True),
    # the instance delivering it, until when: two instances sharing the database never send one entry at once
    Column("claimed_by", String(NAME_LEN), nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    Index(None, "sink", "status", "next_attempt_at"),  # the workers' query: due pending entries
    Index(None, "sink", "mail_key", "id"),  # order per key: an earlier pending entry blocks later ones
    Index(None, "status", "delivered_at"),  # pruning delivered entries
    _one_of("op", *OUTBOX_OPS),
    _one_of("status", *OUTBOX_STATUSES),
)

sink_health = Table(
    "sink_health",
    metadata,
    # per external sink: is delivery moving? (status, /healthz, metrics)
    Column("sink", String(SINK_NAME_LEN), primary_key=True),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UtcDateTime, nullable=True),
    Column("failing_since", UtcDateTime, nullable=True),  # first transient failure since the last success
    Column("delivered", BigInteger, nullable=False, default=0),  # entries delivered, ever
    Column("dead", BigInteger, nullable=False, default=0),  # entries dead-lettered, ever
    _updated(),
)

mailbox_feedback = Table(
    "mailbox_feedback",
    metadata,
    # per mailbox: can delivery feedback (Outlook categories) be written there, and how it went (0003);
    # written by foldertrack.delivery.feedback, read by status
    Column("mailbox", String(MAILBOX_LEN), primary_key=True),
    Column("available", Boolean, nullable=False, default=True),
    Column("reason", Text, nullable=True),  # why unavailable, e.g. "ErrorAccessDenied: ..."
    Column("confirmed", BigInteger, nullable=False, default=0),  # mails marked as in the CRM
    Column("failed", BigInteger, nullable=False, default=0),  # mails marked as failed
    Column("errors", BigInteger, nullable=False, default=0),  # marks that could not be written
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UtcDateTime, nullable=True),
    _updated(),
)

# --- records sync from Dataverse (H3, migration 0004) ---------------------------------------------------

records_sync = Table(
    "records_sync",
    metadata,
    # per CRM table (account, contact, lead): where the next `records sync` continues
    Column("record_type", String(RECORD_TYPE_LEN), primary_key=True),
    Column("delta_link", Text, nullable=True),  # Dataverse @odata.deltaLink; None: next sync is a full one
    Column("synced_at", UtcDateTime, nullable=True),
    Column("record_count", Integer, nullable=False, default=0),  # records of this type from the CRM
)

synced_records = Table(
    "synced_records",
    metadata,
    # which directory records came from the CRM (a full resync removes those the CRM no longer has,
    # never records imported from CSV)
    Column("record_type", String(RECORD_TYPE_LEN), primary_key=True),
    Column("record_id", String(RECORD_ID_LEN), primary_key=True),
    ForeignKeyConstraint(["record_type", "record_id"], ["records.type", "records.id"], ondelete="CASCADE"),
)

# --- hardening (H5, migration 0005) ---------------------------------------------------------------------

key_collisions = Table(
    "key_collisions",
    metadata,
    # a mail that reuses the Message-ID (key) of a different, already tracked mail: not tracked, the
    # first content is kept; one row per offending item
    Column("id", Integer, primary_key=True),
    Column("activity_key", String(KEY_LEN), nullable=False),
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("item_id", String(ITEM_ID_LEN), nullable=False),
    Column("subject", Text, nullable=True),
    Column("sender", String(MAILBOX_LEN), nullable=True),
    Column("fingerprint", String(64), nullable=False),
    Column("kept_fingerprint", String(64), nullable=True),
    Column("at", UtcDateTime, nullable=False, default=utcnow),
    UniqueConstraint("mailbox", "folder_id", "item_id"),
    Index(None, "activity_key"),
)

# --- fleet: instances and mailbox lease epochs (H9, migration 0006) ---------------------------------------

INSTANCE_ID_LEN = 64
HOST_LEN = 255

# mailbox_leases (0001) gains a fencing token and the time of the claim; a released lease keeps its last
# owner and an expiry in the past (free = expires_at <= the database clock)
mailbox_leases.append_column(Column("epoch", BigInteger, nullable=False, default=0, server_default="0"))
mailbox_leases.append_column(Column("acquired_at", UtcDateTime, nullable=True))
Index(None, mailbox_leases.c.owner)
Index(None, mailbox_leases.c.expires_at)

fleet_instances = Table(
    "fleet_instances",
    metadata,
    # one row per running (or dead, or cleanly stopped) watcher process; alive while expires_at is ahead of
    # the database clock and stopped_at is unset (foldertrack.fleet)
    Column("id", String(INSTANCE_ID_LEN), primary_key=True),  # unique per process start
    Column("name", String(NAME_LEN), nullable=False),  # watch.instance (host name or FOLDERTRACK_INSTANCE)
    Column("host", String(HOST_LEN), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_namespace", String(64), nullable=True),  # a pid is only checkable in its own namespace
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),  # database clock
    Column("expires_at", UtcDateTime, nullable=False),  # heartbeat_at + lease TTL: stale after this
    Column("stopped_at", UtcDateTime, nullable=True),  # clean stop, or taken over (SQLite)
    Column("stop_reason", String(NAME_LEN), nullable=True),
    Index(None, "expires_at"),
)

watcher_warnings = Table(
    "watcher_warnings",
    metadata,
    # an instance-wide problem `status` and /healthz report until it clears: a failed rules reload (the
    # previous rules keep running) or a rules directory without rule files (0007, foldertrack.ops)
    Column("instance", String(INSTANCE_ID_LEN), primary_key=True),  # fleet instance id, else its name
    Column("kind", String(32), primary_key=True),
    Column("instance_name", String(NAME_LEN), nullable=False),
    Column("message", Text, nullable=False),
    Column("since", UtcDateTime, nullable=False),
    _updated(),
    _one_of("kind", "rules_reload_failed", "no_rule_files"),
)

# the number of items Exchange reported in the folder when its first sync (backfill) began, for the
# "done/total" progress `status` shows while it runs (0007, foldertrack.watch.backfill)
tracked_folders.append_column(Column("backfill_total", Integer, nullable=True))

graph_subscriptions = Table(
    "graph_subscriptions",
    metadata,
    # a Graph change-notification subscription this watcher made (one per tracked folder), so a restart
    # (even after kill -9) or a new lease holder reuses or deletes it instead of leaking it at Microsoft
    # until it expires; the clientState secret is only stored as an HMAC-SHA256 keyed by the subscription
    # id (0008, foldertrack.watch.graph_push)
    Column("id", String(128), primary_key=True),  # Graph's subscription id (a GUID)
    Column("mailbox", String(MAILBOX_LEN), nullable=False),
    Column("folder_id", String(FOLDER_ID_LEN), nullable=False),
    Column("resource", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("client_state_hash", String(64), nullable=False),  # hex HMAC-SHA256(key=id, clientState)
    Column("instance", String(NAME_LEN), nullable=False),  # watch.instance of the watcher that owns it
    _created(),
    _updated(),
    UniqueConstraint("mailbox", "folder_id"),
)
