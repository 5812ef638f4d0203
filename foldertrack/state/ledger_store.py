"""The ledger (which mail is tracked in which folder, by item), activity links, conflicts and Message-ID
collisions. Functions take a connection so a caller puts several writes (and the SQL sink's) into one
transaction: that is what makes tracking exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.engine import Row

from foldertrack.state.schema import (
    activity_links,
    conflicts,
    key_collisions,
    ledger,
)
from foldertrack.state.types import utcnow

# -- ledger and links ----------------------------------------------------------------------------------------


def ledger_entry(conn: Connection, mailbox: str, mail_key: str, folder_id: str) -> Row | None:
    return conn.execute(
        select(ledger).where(
            ledger.c.mailbox == mailbox, ledger.c.mail_key == mail_key, ledger.c.folder_id == folder_id
        )
    ).first()


def ledger_by_item(conn: Connection, mailbox: str, folder_id: str, item_id: str) -> Row | None:
    return conn.execute(
        select(ledger).where(
            ledger.c.mailbox == mailbox, ledger.c.item_id == item_id, ledger.c.folder_id == folder_id
        )
    ).first()


def present_item_ids(conn: Connection, mailbox: str, folder_id: str, item_ids: Iterable[str]) -> set[str]:
    """Which of ``item_ids`` (one sync page) the ledger already has as present in the folder."""
    found: set[str] = set()
    ids = list(item_ids)
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        rows = conn.execute(
            select(ledger.c.item_id).where(
                ledger.c.mailbox == mailbox,
                ledger.c.folder_id == folder_id,
                ledger.c.state == "present",
                ledger.c.item_id.in_(ids[start : start + 500]),
            )
        )
        found.update(r[0] for r in rows)
    return found


def ledger_present(conn: Connection, mailbox: str, mail_key: str, folder_id: str, item_id: str) -> None:
    now = utcnow()
    entry = ledger_entry(conn, mailbox, mail_key, folder_id)
    if entry is None:
        conn.execute(
            insert(ledger).values(
                mailbox=mailbox,
                mail_key=mail_key,
                folder_id=folder_id,
                item_id=item_id,
                activity_key=mail_key,
                state="present",
                first_seen_at=now,
                updated_at=now,
            )
        )
    else:
        conn.execute(
            update(ledger)
            .where(ledger.c.id == entry.id)
            .values(item_id=item_id, state="present", updated_at=now)
        )


def ledger_left(conn: Connection, entry_id: int) -> None:
    conn.execute(update(ledger).where(ledger.c.id == entry_id).values(state="left", updated_at=utcnow()))


def present_entries(conn: Connection, activity_key: str) -> list[Row]:
    """Every ledger row where the mail is (as far as each folder's sync knows) still present."""
    query = select(ledger).where(ledger.c.activity_key == activity_key, ledger.c.state == "present")
    return list(conn.execute(query))


def still_present(conn: Connection, activity_key: str) -> bool:
    """True when the mail is still in some tracked folder of some mailbox."""
    return (
        conn.execute(
            select(func.count())
            .select_from(ledger)
            .where(ledger.c.activity_key == activity_key, ledger.c.state == "present")
        ).scalar_one()
        > 0
    )


def link(conn: Connection, activity_key: str) -> Row | None:
    return conn.execute(select(activity_links).where(activity_links.c.activity_key == activity_key)).first()


def put_link(
    conn: Connection,
    activity_key: str,
    *,
    owner_mailbox: str,
    owner_folder_id: str,
    regarding,
    state: str,
    exists: bool,
    fingerprint: str | None = None,
    arrived_at=None,
) -> None:
    """Create or change the activity's link; ``fingerprint`` and ``arrived_at`` are kept when not given."""
    values = dict(
        owner_mailbox=owner_mailbox,
        owner_folder_id=owner_folder_id,
        regarding_type=regarding.type if regarding else None,
        regarding_id=regarding.id if regarding else None,
        regarding_name=regarding.name if regarding else None,
        state=state,
        updated_at=utcnow(),
    )
    if fingerprint is not None:
        values["fingerprint"] = fingerprint
    if arrived_at is not None:
        values["arrived_at"] = arrived_at
    if exists:
        conn.execute(
            update(activity_links).where(activity_links.c.activity_key == activity_key).values(**values)
        )
    else:
        conn.execute(insert(activity_links).values(activity_key=activity_key, created_at=utcnow(), **values))


def add_conflict(
    conn: Connection,
    activity_key: str,
    mailbox: str,
    folder_id: str,
    policy: str,
    kept: str | None,
    other: str | None,
) -> None:
    conn.execute(
        insert(conflicts).values(
            activity_key=activity_key,
            mailbox=mailbox,
            folder_id=folder_id,
            policy=policy,
            kept_regarding=kept,
            other_regarding=other,
            at=utcnow(),
        )
    )


def add_collision(
    conn: Connection,
    activity_key: str,
    mailbox: str,
    folder_id: str,
    item_id: str,
    *,
    subject: str | None,
    sender: str | None,
    fingerprint: str,
    kept_fingerprint: str | None,
) -> bool:
    """Record a mail that reuses a tracked mail's key with other content (once per item); True if new."""
    exists = conn.execute(
        select(key_collisions.c.id).where(
            key_collisions.c.mailbox == mailbox,
            key_collisions.c.folder_id == folder_id,
            key_collisions.c.item_id == item_id,
        )
    ).first()
    if exists is not None:
        return False
    conn.execute(
        insert(key_collisions).values(
            activity_key=activity_key,
            mailbox=mailbox,
            folder_id=folder_id,
            item_id=item_id,
            subject=(subject or None) and subject[:1000],
            sender=sender,
            fingerprint=fingerprint,
            kept_fingerprint=kept_fingerprint,
            at=utcnow(),
        )
    )
    return True


def collision_rows(conn: Connection, mailbox: str | None = None) -> list[Row]:
    """Recorded Message-ID collisions (of one mailbox, or all), oldest first."""
    query = select(key_collisions).order_by(key_collisions.c.id)
    if mailbox is not None:
        query = query.where(key_collisions.c.mailbox == mailbox)
    return list(conn.execute(query))


def probe_item_id(conn: Connection, mailbox: str, exclude: Iterable[str] = ()) -> str | None:
    """An item of the mailbox we tracked (to ask the server whether GetItem works at all)."""
    excluded = set(exclude)
    rows = conn.execute(
        select(ledger.c.item_id)
        .where(ledger.c.mailbox == mailbox, ledger.c.state == "present")
        .limit(len(excluded) + 1)
    )
    return next((r[0] for r in rows if r[0] not in excluded), None)
