"""The default sink: activities, their parties and attachments as rows in the state database.

Because the tables live beside the ledger, the watcher hands over its transaction's connection and the
activity commits together with the ledger row and the new sync state. Work runs inside a SAVEPOINT on that
connection, so a rejected activity (PermanentSinkError) leaves the caller's transaction usable, e.g. to
record a dead letter. In a batched sync page (:mod:`foldertrack.state.page_batch`) there is no savepoint
and new activities are inserted with the page's other new rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, exc, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert

from foldertrack.errors import PermanentSinkError, SinkError, TransientSinkError
from foldertrack.model import Activity, Attachment, Party
from foldertrack.sinks.base import ActivitySink, UpsertOutcome
from foldertrack.state import page_batch
from foldertrack.state.database import SQLITE_BEGIN_OPTION
from foldertrack.state.schema import activities, activity_attachments, activity_parties, records
from foldertrack.state.types import to_utc, utcnow

#: columns compared to decide "unchanged"; tracked_at/updated_at are ours, not the activity's content
_CONTENT_COLUMNS: tuple[str, ...] = (
    "message_id",
    "conversation_id",
    "subject",
    "text_body",
    "html_body",
    "sender",
    "sent_at",
    "received_at",
    "direction",
    "mailbox",
    "folder_id",
    "folder_path",
    "regarding_type",
    "regarding_id",
    "regarding_name",
    "state",
)
_PARTY_COLUMNS = ("role", "address", "name", "record_type", "record_id")
_ATTACHMENT_COLUMNS = ("name", "content_type", "size", "content_sha256", "stored", "is_inline")


class SqlActivitySink(ActivitySink):
    """Writes activities into the ``activities``, ``activity_parties`` and ``activity_attachments`` tables."""

    name = "sql"
    shares_state_database = True

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def create(cls, config: object, engine: Engine) -> SqlActivitySink:
        """Plug-in factory (see :mod:`foldertrack.sinks.registry`); the SQL sink needs only the engine."""
        return cls(engine)

    def upsert(self, activity: Activity, conn: Connection | None = None) -> UpsertOutcome:
        values = _activity_values(activity)
        batch = page_batch.of(conn)
        if batch is not None and conn is not None:
            return self._upsert_batched(batch, conn, activity, values)
        try:
            with self._transaction(conn) as c:
                return self._upsert(c, activity.key, values, activity.parties, activity.attachments)
        except exc.SQLAlchemyError as error:
            raise sink_error(error, activity.key) from error

    def untrack(self, key: str, conn: Connection | None = None) -> bool:
        try:
            with self._transaction(conn) as c:
                row = c.execute(select(activities).where(activities.c.key == key)).mappings().first()
                if row is None:
                    return False
                cleared = {
                    "state": "untracked",
                    "regarding_type": None,
                    "regarding_id": None,
                    "regarding_name": None,
                }
                if any(row[k] != v for k, v in cleared.items()):
                    query = update(activities).where(activities.c.key == key)
                    c.execute(query.values(**cleared, updated_at=utcnow()))
                return True
        except exc.SQLAlchemyError as error:
            raise sink_error(error, key) from error

    def _upsert_batched(
        self, batch: page_batch.PageBatch, c: Connection, activity: Activity, values: dict[str, Any]
    ) -> UpsertOutcome:
        """In a batched sync page (no savepoint: a failure aborts the batch, see page_batch): a new
        activity is queued for the page's multi-row insert; one that exists is compared and updated."""
        key = activity.key
        try:
            if values["regarding_type"] is not None and values["regarding_name"] is None:
                values["regarding_name"] = batch.record_name(
                    c, values["regarding_type"], values["regarding_id"], _record_name
                )
            if not batch.knows_absent(key):
                return self._upsert(c, key, values, activity.parties, activity.attachments)
        except exc.SQLAlchemyError as error:
            raise sink_error(error, key) from error
        now = utcnow()

        def on_conflict(conn: Connection) -> None:  # another writer created it meanwhile
            self._upsert(conn, key, values, activity.parties, activity.attachments)

        queued = page_batch.QueuedActivity(
            row={**values, "key": key, "tracked_at": now, "updated_at": now},
            parties=[_party_values(key, i, p) for i, p in enumerate(activity.parties)],
            attachments=[_attachment_values(key, i, a) for i, a in enumerate(activity.attachments)],
            on_conflict=on_conflict,
        )
        batch.queue_activity(key, queued)
        return "created"

    @contextmanager
    def _transaction(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None and page_batch.of(conn) is not None:
            yield conn  # a batched page has no savepoints: a failure rolls the whole page back
            return
        if conn is None:
            # read-then-write: on SQLite take the write lock at BEGIN rather than fail on upgrade
            with (
                self.engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "immediate"}) as own,
                own.begin(),
            ):
                yield own
        else:
            with conn.begin_nested():
                yield conn

    def _upsert(
        self,
        c: Connection,
        key: str,
        values: dict[str, Any],
        parties: tuple[Party, ...],
        attachments: tuple[Attachment, ...],
    ) -> UpsertOutcome:
        if values["regarding_type"] is not None and values["regarding_name"] is None:
            values["regarding_name"] = _record_name(c, values["regarding_type"], values["regarding_id"])
        party_rows = [_party_values(key, i, p) for i, p in enumerate(parties)]
        attachment_rows = [_attachment_values(key, i, a) for i, a in enumerate(attachments)]
        now = utcnow()

        existing = c.execute(select(activities).where(activities.c.key == key)).mappings().first()
        if existing is None:
            row = {**values, "key": key, "tracked_at": now, "updated_at": now}
            if c.execute(_insert_if_absent(c, row)).first() is not None:
                _insert_children(c, party_rows, attachment_rows)
                return "created"
            # another writer created it between our SELECT and INSERT: continue as an update
            existing = c.execute(select(activities).where(activities.c.key == key)).mappings().one()

        fields_changed = any(existing[col] != values[col] for col in _CONTENT_COLUMNS)
        parties_changed = _children(c, activity_parties, key, _PARTY_COLUMNS) != [
            tuple(r[col] for col in _PARTY_COLUMNS) for r in party_rows
        ]
        attachments_changed = _children(c, activity_attachments, key, _ATTACHMENT_COLUMNS) != [
            tuple(r[col] for col in _ATTACHMENT_COLUMNS) for r in attachment_rows
        ]
        if not (fields_changed or parties_changed or attachments_changed):
            return "unchanged"

        changes: dict[str, Any] = {**values, "updated_at": now}
        if existing["state"] == "untracked" and values["state"] == "tracked":
            changes["tracked_at"] = now  # tracked again
        c.execute(update(activities).where(activities.c.key == key).values(changes))
        if parties_changed:
            c.execute(delete(activity_parties).where(activity_parties.c.activity_key == key))
            _insert_children(c, party_rows, [])
        if attachments_changed:
            c.execute(delete(activity_attachments).where(activity_attachments.c.activity_key == key))
            _insert_children(c, [], attachment_rows)
        return "updated"


def sink_error(error: exc.SQLAlchemyError, key: str) -> SinkError:
    """Classify a database error: lost connections, lock waits and serialisation failures may pass
    (transient); constraint violations, bad values and everything else will not (permanent)."""
    orig = getattr(error, "orig", None)
    reason = (str(orig) if orig is not None else str(error)).strip().splitlines()
    message = f"activity {key[:200]}: {type(orig or error).__name__}: {reason[0] if reason else ''}".rstrip(
        ": "
    )
    if isinstance(error, exc.DBAPIError):
        transient = (
            error.connection_invalidated
            or isinstance(error, exc.OperationalError | exc.InterfaceError)
            or "database is locked" in str(orig)
        )
        if transient and not isinstance(error, exc.IntegrityError | exc.DataError):
            return TransientSinkError(message)
    elif isinstance(error, exc.DisconnectionError | exc.TimeoutError):
        return TransientSinkError(message)
    return PermanentSinkError(message)


def _activity_values(activity: Activity) -> dict[str, Any]:
    times: dict[str, datetime | None] = {}
    for label, when in (("sent_at", activity.sent_at), ("received_at", activity.received_at)):
        try:
            times[label] = to_utc(when) if when is not None else None
        except (ValueError, TypeError) as error:
            raise PermanentSinkError(f"activity {activity.key[:200]}: {label}: {error}") from None
    regarding = activity.regarding if activity.state == "tracked" else None
    return {
        "message_id": activity.message_id,
        "conversation_id": activity.conversation_id,
        "subject": _text(activity.subject),
        "text_body": _text(activity.text_body),
        "html_body": _text(activity.html_body),
        "sender": activity.sender,
        "sent_at": times["sent_at"],
        "received_at": times["received_at"],
        "direction": activity.direction,
        "mailbox": activity.mailbox,
        "folder_id": activity.folder_id,
        "folder_path": activity.folder_path,
        "regarding_type": regarding.type if regarding else None,
        "regarding_id": regarding.id if regarding else None,
        "regarding_name": regarding.name if regarding else None,
        "state": activity.state,
    }


def _party_values(key: str, position: int, party: Party) -> dict[str, Any]:
    return {
        "activity_key": key,
        "position": position,
        "role": party.role,
        "address": party.address,
        "name": _text(party.name),
        "record_type": party.record.type if party.record else None,
        "record_id": party.record.id if party.record else None,
    }


def _attachment_values(key: str, position: int, attachment: Attachment) -> dict[str, Any]:
    content = attachment.content
    return {
        "activity_key": key,
        "position": position,
        "name": _text(attachment.name) or "",
        "content_type": attachment.content_type,
        "size": attachment.size,
        "content": content,
        "content_sha256": hashlib.sha256(content).hexdigest() if content is not None else None,
        "stored": content is not None,
        "is_inline": attachment.is_inline,
    }


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters; mails occasionally do. Drop them on every backend."""
    return value.replace("\x00", "") if value is not None else None


def _record_name(c: Connection, record_type: str, record_id: str) -> str | None:
    query = select(records.c.name).where(records.c.type == record_type, records.c.id == record_id)
    return c.execute(query).scalar_one_or_none()


def _insert_if_absent(c: Connection, values: dict[str, Any]) -> ReturningInsert[tuple[str]]:
    """INSERT that returns the key, or no row when another writer got there first (no error, so the
    caller's transaction stays usable; rowcount is not reliable across drivers, RETURNING is)."""
    if c.dialect.name == "postgresql":
        query = postgresql.insert(activities).values(values).on_conflict_do_nothing(index_elements=["key"])
    elif c.dialect.name == "sqlite":
        query = sqlite.insert(activities).values(values).on_conflict_do_nothing(index_elements=["key"])
    else:
        query = insert(activities).values(values)
    return query.returning(activities.c.key)


def _insert_children(
    c: Connection, party_rows: list[dict[str, Any]], attachment_rows: list[dict[str, Any]]
) -> None:
    if party_rows:
        c.execute(insert(activity_parties), party_rows)
    if attachment_rows:
        c.execute(insert(activity_attachments), attachment_rows)


def _children(c: Connection, table: Any, key: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    query = (
        select(*(table.c[col] for col in columns))
        .where(table.c.activity_key == key)
        .order_by(table.c.position)
    )
    return [tuple(row) for row in c.execute(query)]
