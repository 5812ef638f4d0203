"""Items that failed: their failures, dead letters, and the replays ``foldertrack retry`` asks for. Functions
take a connection, so a failure is recorded in the same transaction as the page around it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select, update

from foldertrack.state.schema import (
    dead_letters,
)
from foldertrack.state.types import utcnow

# -- failures and dead letters -------------------------------------------------------------------------------


def record_failure(
    conn: Connection,
    mailbox: str,
    folder_id: str,
    item_id: str,
    error: str,
    *,
    max_attempts: int,
    mail_key: str | None = None,
    subject: str | None = None,
) -> int:
    """Count one more failed attempt for the item; at ``max_attempts`` it becomes a dead letter.
    Returns the attempts so far. Runs in the page's transaction, which commits even when the page's
    sync state is not advanced."""
    now = utcnow()
    row = conn.execute(
        select(dead_letters).where(
            dead_letters.c.mailbox == mailbox,
            dead_letters.c.folder_id == folder_id,
            dead_letters.c.item_id == item_id,
        )
    ).first()
    attempts = (row.attempts if row is not None and row.status == "retrying" else 0) + 1
    status = "dead" if attempts >= max_attempts else "retrying"
    values = dict(
        error=error[:4000],
        attempts=attempts,
        last_attempt_at=now,
        status=status,
        mail_key=mail_key,
        subject=(subject or None) and subject[:1000],
    )
    if row is None:
        conn.execute(
            insert(dead_letters).values(
                mailbox=mailbox, folder_id=folder_id, item_id=item_id, first_failed_at=now, **values
            )
        )
    else:
        conn.execute(update(dead_letters).where(dead_letters.c.id == row.id).values(**values))
    return attempts


def dead_item_ids(conn: Connection, mailbox: str, folder_id: str) -> set[str]:
    rows = conn.execute(
        select(dead_letters.c.item_id).where(
            dead_letters.c.mailbox == mailbox,
            dead_letters.c.folder_id == folder_id,
            dead_letters.c.status == "dead",
        )
    )
    return {r[0] for r in rows}


def clear_failure(conn: Connection, mailbox: str, folder_id: str, item_id: str) -> None:
    conn.execute(
        delete(dead_letters).where(
            dead_letters.c.mailbox == mailbox,
            dead_letters.c.folder_id == folder_id,
            dead_letters.c.item_id == item_id,
            dead_letters.c.status == "retrying",
        )
    )


# -- replaying dead letters (`foldertrack retry`) ----------------------------------------------------------


def request_replay(conn: Connection, ids: Iterable[int] | None = None) -> int:
    """Mark dead letters for replay (status retrying, attempts 0); a watcher picks them up. Returns how many."""
    query = update(dead_letters).where(dead_letters.c.status == "dead")
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(list(ids)))
    return conn.execute(query.values(status="retrying", attempts=0, last_attempt_at=utcnow())).rowcount


def replay_item_ids(conn: Connection, mailbox: str, folder_id: str) -> list[str]:
    """Items of the folder to fetch again although no sync page names them: dead letters ``foldertrack
    retry`` asked to replay, and every item still "retrying" (if it is gone, that clears its row; a
    retrying row nothing looked at again would otherwise stay forever)."""
    rows = conn.execute(
        select(dead_letters.c.item_id).where(
            dead_letters.c.mailbox == mailbox,
            dead_letters.c.folder_id == folder_id,
            dead_letters.c.status == "retrying",
        )
    )
    return [r[0] for r in rows]


def replay_folders(conn: Connection) -> set[tuple[str, str]]:
    rows = conn.execute(
        select(dead_letters.c.mailbox, dead_letters.c.folder_id)
        .where(dead_letters.c.status == "retrying", dead_letters.c.attempts == 0)
        .distinct()
    )
    return {(r[0], r[1]) for r in rows}


def forget_failure(conn: Connection, mailbox: str, folder_id: str, item_id: str) -> bool:
    """Drop the item's failure row (the item is gone); True when there was one."""
    result = conn.execute(
        delete(dead_letters).where(
            dead_letters.c.mailbox == mailbox,
            dead_letters.c.folder_id == folder_id,
            dead_letters.c.item_id == item_id,
        )
    )
    return result.rowcount > 0
