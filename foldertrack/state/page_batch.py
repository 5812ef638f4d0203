"""One sync page's database work in few statements.

Tracking a new mail one statement at a time costs 15-18 statements and two nested savepoints. A
:class:`PageBatch` reads what the page's decisions need in a few queries up front (the folder's ledger
rows and the activity links of the page's keys, the activities the SQL sink would look up, the items with
a failure row), answers the decisions from memory, and queues the rows that are new (ledger, links,
activities, parties, attachments) for multi-row inserts when the page's decisions are done. Rows that
exist already are changed at once, as before.

The batch is attached to the page transaction's connection (``conn.info``), so the SQL sink and the outbox
writer find it without a change to the sink interface. It runs without savepoints: if an item fails, the
page's transaction is rolled back and the page is applied again the careful way (a savepoint per item),
which isolates the failing item exactly as before. Pages that name one mail key twice take the careful
way from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from foldertrack.model import RecordRef
from foldertrack.state import dead_letters_store, ledger_store
from foldertrack.state.schema import (
    activities,
    activity_attachments,
    activity_links,
    activity_parties,
    dead_letters,
    ledger,
)
from foldertrack.state.types import utcnow

_KEY = "foldertrack.page_batch"
_CHUNK = 200  # rows per multi-row INSERT (under SQLite's bound-parameter limit for every table)
_IN_CHUNK = 500


class BatchAborted(Exception):
    """An item failed inside a batched page: roll the page back and apply it with a savepoint per item.
    The item's error is the ``__cause__``."""

    def __init__(self, item_id: str):
        super().__init__(f"item {item_id[:80]} failed in a batched page")
        self.item_id = item_id


@dataclass
class QueuedActivity:
    """An activity the SQL sink found new: inserted with the page's other new rows."""

    row: dict[str, Any]
    parties: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    on_conflict: Callable[[Connection], object]  # another writer created it meanwhile: upsert it singly


@dataclass
class PageBatch:
    mailbox: str
    folder_id: str
    entries: dict[str, Any]  # mail key → this folder's ledger row (None: none)
    links: dict[str, Any]  # mail key → activity link row (None: none)
    existing: dict[str, Any]  # activity key → the activities row (mapping), None: none
    failing: set[str]  # item ids with a dead_letters row in this folder
    record_names: dict[tuple[str, str], str | None] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)  # activity keys queued for insert
    ledger_rows: list[dict[str, Any]] = field(default_factory=list)
    link_rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    queued: dict[str, QueuedActivity] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection, mailbox: str, folder_id: str, keys: Iterable[str]) -> PageBatch:
        """Read what deciding the page's ``keys`` needs, in a few queries."""
        keys = list(dict.fromkeys(keys))
        entries: dict[str, Any] = dict.fromkeys(keys)
        links: dict[str, Any] = dict.fromkeys(keys)
        existing: dict[str, Any] = dict.fromkeys(keys)
        for chunk in _chunks(keys, _IN_CHUNK):
            query = select(ledger).where(
                ledger.c.mailbox == mailbox, ledger.c.folder_id == folder_id, ledger.c.mail_key.in_(chunk)
            )
            entries.update((r.mail_key, r) for r in conn.execute(query))
            query = select(activity_links).where(activity_links.c.activity_key.in_(chunk))
            links.update((r.activity_key, r) for r in conn.execute(query))
            query = select(activities).where(activities.c.key.in_(chunk))
            existing.update((r["key"], r) for r in conn.execute(query).mappings())
        failing = {
            r[0]
            for r in conn.execute(
                select(dead_letters.c.item_id).where(
                    dead_letters.c.mailbox == mailbox, dead_letters.c.folder_id == folder_id
                )
            )
        }
        return cls(mailbox, folder_id, entries, links, existing, failing)

    # -- the reads and writes of sync._track (same signatures as ledger_store and dead_letters_store) ---

    def ledger_entry(self, conn: Connection, mailbox: str, mail_key: str, folder_id: str) -> Any:
        if (mailbox, folder_id) == (self.mailbox, self.folder_id) and mail_key in self.entries:
            return self.entries[mail_key]
        return ledger_store.ledger_entry(conn, mailbox, mail_key, folder_id)

    def link(self, conn: Connection, activity_key: str) -> Any:
        if activity_key in self.links:
            return self.links[activity_key]
        return ledger_store.link(conn, activity_key)

    def ledger_present(
        self, conn: Connection, mailbox: str, mail_key: str, folder_id: str, item_id: str
    ) -> None:
        known = (mailbox, folder_id) == (self.mailbox, self.folder_id) and mail_key in self.entries
        if not known or self.entries[mail_key] is not None:
            ledger_store.ledger_present(conn, mailbox, mail_key, folder_id, item_id)
            return
        now = utcnow()
        row = dict(
            mailbox=mailbox,
            mail_key=mail_key,
            folder_id=folder_id,
            item_id=item_id,
            activity_key=mail_key,
            state="present",
            first_seen_at=now,
            updated_at=now,
        )
        self.ledger_rows.append(row)
        self.entries[mail_key] = SimpleNamespace(id=None, **row)

    def put_link(self, conn: Connection, activity_key: str, *, exists: bool, **values: Any) -> None:
        if exists or activity_key not in self.links:
            ledger_store.put_link(conn, activity_key, exists=exists, **values)
            return
        regarding: RecordRef | None = values.pop("regarding")
        now = utcnow()
        row = dict(
            activity_key=activity_key,
            regarding_type=regarding.type if regarding else None,
            regarding_id=regarding.id if regarding else None,
            regarding_name=regarding.name if regarding else None,
            fingerprint=values.pop("fingerprint", None),
            arrived_at=values.pop("arrived_at", None),
            created_at=now,
            updated_at=now,
            **values,
        )
        self.link_rows[activity_key] = row
        self.links[activity_key] = SimpleNamespace(**row)

    def clear_failure(self, conn: Connection, mailbox: str, folder_id: str, item_id: str) -> None:
        if item_id in self.failing:
            dead_letters_store.clear_failure(conn, mailbox, folder_id, item_id)

    # -- the SQL sink's side ------------------------------------------------------------------------------

    def knows_absent(self, key: str) -> bool:
        """The activity did not exist when the page began and is not queued yet: the sink may queue it."""
        return key in self.existing and self.existing[key] is None and key not in self.created

    def queue_activity(self, key: str, activity: QueuedActivity) -> None:
        self.queued[key] = activity
        self.created.add(key)

    def record_name(self, conn: Connection, record_type: str, record_id: str, lookup) -> str | None:
        ref = (record_type, record_id)
        if ref not in self.record_names:
            self.record_names[ref] = lookup(conn, record_type, record_id)
        return self.record_names[ref]

    # -- the end of the page's decisions ------------------------------------------------------------------

    def flush(self, conn: Connection) -> None:
        """Insert the queued rows, a few hundred per statement."""
        for rows in _chunks(self.ledger_rows, _CHUNK):
            conn.execute(insert(ledger).values(rows))
        for rows in _chunks(list(self.link_rows.values()), _CHUNK):
            conn.execute(insert(activity_links).values(rows))
        queued = list(self.queued.items())
        for chunk in _chunks(queued, _CHUNK):
            inserted = {r[0] for r in conn.execute(_insert_absent(conn, [q.row for _, q in chunk]))}
            parties = [p for key, q in chunk if key in inserted for p in q.parties]
            attachments = [a for key, q in chunk if key in inserted for a in q.attachments]
            for rows in _chunks(parties, _CHUNK):
                conn.execute(insert(activity_parties).values(rows))
            for rows in _chunks(attachments, _CHUNK):
                conn.execute(insert(activity_attachments).values(rows))
            for key, q in chunk:
                if key not in inserted:
                    q.on_conflict(conn)
        self.ledger_rows, self.link_rows, self.queued = [], {}, {}


def _chunks(rows: list, size: int) -> Iterator[list]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert_absent(conn: Connection, rows: list[dict[str, Any]]):
    """Multi-row INSERT of activities that skips (and does not return) keys another writer created."""
    if conn.dialect.name == "postgresql":
        query = postgresql.insert(activities).values(rows).on_conflict_do_nothing(index_elements=["key"])
    elif conn.dialect.name == "sqlite":
        query = sqlite.insert(activities).values(rows).on_conflict_do_nothing(index_elements=["key"])
    else:
        query = insert(activities).values(rows)
    return query.returning(activities.c.key)


def of(conn: Connection | None) -> PageBatch | None:
    """The batch of the page transaction ``conn`` belongs to, if it is batched."""
    return conn.info.get(_KEY) if conn is not None else None


@contextmanager
def attached(conn: Connection, batch: PageBatch) -> Iterator[PageBatch]:
    """Attach ``batch`` to the connection for the page's decisions; always detached afterwards (the
    DBAPI connection goes back to the pool)."""
    conn.info[_KEY] = batch
    try:
        yield batch
    finally:
        conn.info.pop(_KEY, None)
