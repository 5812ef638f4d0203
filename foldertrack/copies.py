"""Which copy of a mail decides, when the same key turns up again (used by :mod:`foldertrack.sync`).

- A different mail reusing a tracked mail's Message-ID (other sender, sent time or subject: see
  :func:`foldertrack.exchange.bounds.fingerprint`) is a collision: recorded and logged, never tracked.
- Two copies of one mail in tracked folders of one mailbox: the copy that arrived later by the server's
  clock decides the regarding, whichever folder is caught up first; a tie goes to the greater folder id.
- A copy that is gone from Exchange although its folder has not caught up yet moved: the new copy takes
  over, whatever the clocks say.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from exchangelib import Account
from sqlalchemy import Connection, Engine

from foldertrack.exchange.items import still_there
from foldertrack.model import Activity
from foldertrack.state import ledger_store
from foldertrack.targets import Target

log = logging.getLogger("foldertrack.sync")


def moved_owner_copies(
    engine: Engine, target: Target, account: Account, activities: Iterable[Activity]
) -> set[str]:
    """Keys whose tracked copy, in another tracked folder of this mailbox, is gone from Exchange although
    that folder has not caught up yet: the mail moved here (asked in one GetItem, before the page's write
    transaction)."""
    owners: dict[str, str] = {}
    with engine.connect() as conn:
        for activity in activities:
            link = ledger_store.link(conn, activity.key)
            if (
                link is None
                or link.state != "tracked"
                or link.owner_mailbox != target.mailbox
                or link.owner_folder_id == target.folder_id
            ):
                continue
            entry = ledger_store.ledger_entry(conn, target.mailbox, activity.key, link.owner_folder_id)
            if entry is not None and entry.state == "present":
                owners[activity.key] = entry.item_id
    if not owners:
        return set()
    there = still_there(account, list(owners.values()))
    return {key for key, item_id in owners.items() if item_id not in there}


def stale_copies(engine: Engine, target: Target, account: Account, departed: Iterable[str]) -> set[int]:
    """Ledger rows (ids) of this mailbox, in other folders, still marked present for mails now leaving
    ``target``, whose items are gone from Exchange: the mail moved on from there too, but that folder has
    not caught up yet. Without this, leaving an ``on_leave: untrack`` folder would look like "still in
    another tracked folder" and the mail would never be untracked (asked in one GetItem, before the page's
    write transaction, and only for keys this folder would untrack)."""
    rows = present_elsewhere(engine, target, departed)
    if not rows:
        return set()
    there = still_there(account, [item_id for item_id, _ in rows.values()])
    return {row_id for row_id, (item_id, _) in rows.items() if item_id not in there}


def present_elsewhere(engine: Engine, target: Target, departed: Iterable[str]) -> dict[int, tuple[str, str]]:
    """Ledger rows still marked present in other folders of ``target``'s mailbox for the mails now leaving
    ``target``: row id → (item id, folder id). Whether each item is really still there is the source's
    question (EWS: one GetItem; Graph: the message's parent folder)."""
    rows: dict[int, tuple[str, str]] = {}
    with engine.connect() as conn:
        for item_id in departed:
            entry = ledger_store.ledger_by_item(conn, target.mailbox, target.folder_id, item_id)
            if entry is None or entry.state != "present":
                continue
            for other in ledger_store.present_entries(conn, entry.activity_key):
                if other.mailbox == target.mailbox and other.folder_id != target.folder_id:
                    rows[other.id] = (other.item_id, other.folder_id)
    return rows


def arrived_earlier(conn: Connection, current, target: Target, key: str, arrived_at: datetime | None) -> bool:
    """True when the owner's copy (in another folder, still there) arrived after this one: it keeps the
    regarding. Ties go to the greater folder id, so the outcome never depends on the catch-up order."""
    if current.state != "tracked" or current.owner_folder_id == target.folder_id:
        return False
    if arrived_at is None or current.arrived_at is None:
        return False
    owner_entry = ledger_store.ledger_entry(conn, target.mailbox, key, current.owner_folder_id)
    if owner_entry is None or owner_entry.state != "present":
        return False
    theirs = current.arrived_at if current.arrived_at.tzinfo else current.arrived_at.replace(tzinfo=UTC)
    return (arrived_at, target.folder_id) < (theirs, current.owner_folder_id)


def record_collision(
    conn: Connection, target: Target, item_id: str, activity: Activity, content: str, kept: str
) -> None:
    """Record (once per item) and log a mail that reuses a tracked mail's key with other content."""
    new = ledger_store.add_collision(
        conn,
        activity.key,
        target.mailbox,
        target.folder_id,
        item_id,
        subject=activity.subject,
        sender=activity.sender,
        fingerprint=content,
        kept_fingerprint=kept,
    )
    if new:
        log.warning(
            "%s %s: Message-ID collision: a different mail (from %s, subject %r) reuses %s of a tracked "
            "mail; the tracked activity keeps its content, this mail is not tracked (see status)",
            target.mailbox,
            target.path,
            activity.sender,
            (activity.subject or "")[:200],
            activity.key[:200],
        )


def probe_item(engine: Engine, target: Target, wanted: list[str]) -> str | None:
    """An item of the mailbox known to exist (or to have existed), not among ``wanted``."""
    with engine.connect() as conn:
        return ledger_store.probe_item_id(conn, target.mailbox, exclude=wanted)
