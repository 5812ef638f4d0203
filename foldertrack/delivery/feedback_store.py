"""The ``mailbox_feedback`` table: per mailbox, whether feedback categories can be written and how it went.

Written by :class:`foldertrack.delivery.feedback.MailboxFeedback`, read by ``status``: a mailbox whose
service account may only read shows ``available = false`` with the reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.engine import Row

from foldertrack.state import watch_store as store
from foldertrack.state.schema import mailbox_feedback
from foldertrack.state.types import utcnow

#: counts kept in the table (others live only in ``MailboxFeedback.counts``)
STORED_COUNTS: tuple[str, ...] = ("confirmed", "failed", "errors")


def record(
    engine: Engine,
    rows: dict[str, dict[str, Any]],
    *,
    wait: bool = True,
) -> None:
    """Apply ``{mailbox: {"available": bool, "reason": str, "error": str, "counts": Counter}}`` (each key
    optional) in one transaction. ``wait=False`` raises ``WriterBusy`` rather than queue behind our other
    SQLite writers."""
    with store.writing(engine, wait=wait) as conn:
        for mailbox, values in rows.items():
            upsert(conn, mailbox, **values)


def upsert(
    conn: Connection,
    mailbox: str,
    *,
    available: bool | None = None,
    reason: str | None = None,
    error: str | None = None,
    counts: Counter[str] | None = None,
) -> None:
    """Create or update the mailbox's row: state, last error, counts added to the stored ones."""
    now = utcnow()
    row = conn.execute(
        select(mailbox_feedback.c.mailbox).where(mailbox_feedback.c.mailbox == mailbox)
    ).first()
    values: dict[str, Any] = {"updated_at": now}
    if available is not None:
        values.update(available=available, reason=None if available else reason)
    if error is not None:
        values.update(last_error=error[:2000], last_error_at=now)
    counts = counts or Counter()
    if row is None:
        conn.execute(
            insert(mailbox_feedback).values(
                mailbox=mailbox,
                available=values.pop("available", True),
                **{name: counts[name] for name in STORED_COUNTS},
                **values,
            )
        )
        return
    for name in STORED_COUNTS:
        if counts[name]:
            values[name] = mailbox_feedback.c[name] + counts[name]
    conn.execute(update(mailbox_feedback).where(mailbox_feedback.c.mailbox == mailbox).values(**values))


def feedback_rows(conn: Connection) -> list[Row]:
    """Every mailbox's feedback state for ``status``: mailbox, available, reason, confirmed, failed,
    errors, last_error, last_error_at, updated_at."""
    return list(conn.execute(select(mailbox_feedback).order_by(mailbox_feedback.c.mailbox)))
