"""The watcher's own state: the write lock, tracked folders and their sync states, mailbox health and rule
issues (the ledger and links: ``ledger_store``; failures and dead letters: ``dead_letters_store``).
Functions take a connection so a caller can put several writes (and the SQL sink's) into one transaction:
that is what makes tracking exactly once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.engine import Row

from foldertrack.state.database import SQLITE_BEGIN_OPTION
from foldertrack.state.schema import (
    rule_issues,
    subscription_health,
    tracked_folders,
)
from foldertrack.state.types import utcnow


@dataclass(frozen=True)
class FolderPlan:
    """What the daemon wants a tracked_folders row to say."""

    mailbox: str
    folder_id: str
    configured_path: str
    current_path: str
    rule_source: str
    parent_rule_path: str | None
    status: str  # active | stale_path


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS_GUARD = threading.Lock()


class WriterBusy(Exception):
    """``writing(engine, wait=False)``: another thread of ours is writing to this SQLite database."""


def _writer_lock(engine: Engine) -> threading.RLock | None:
    """SQLite has one writer at a time, and a writer waiting on its busy timeout sleeps in steps of up to
    100 ms instead of waking when the lock frees. Our own threads therefore queue on a Python lock first
    (woken at once); other processes are still waited for by the busy timeout. PostgreSQL: None."""
    if engine.dialect.name != "sqlite":
        return None
    with _SQLITE_WRITERS_GUARD:
        lock = _SQLITE_WRITERS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITERS[engine] = threading.RLock()
    return lock


@contextmanager
def writing(engine: Engine, *, wait: bool = True) -> Iterator[Connection]:
    """A write transaction; on SQLite it takes the write lock at BEGIN, so concurrent writers wait for
    each other instead of failing with "database is locked" when a read turns into a write. With
    ``wait=False`` it raises WriterBusy rather than queue behind our other writers (advisory writes)."""
    lock = _writer_lock(engine)
    if lock is not None and not lock.acquire(blocking=wait):
        raise WriterBusy("another thread is writing to the database")
    try:
        with engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "immediate"}) as conn, conn.begin():
            yield conn
    finally:
        if lock is not None:
            lock.release()


# -- tracked folders -----------------------------------------------------------------------------------------


def pins(conn: Connection, mailbox: str) -> dict[str, str]:
    """Configured path → folder id, for folders a rule resolved to directly (not via a pattern)."""
    rows = conn.execute(
        select(tracked_folders.c.configured_path, tracked_folders.c.folder_id).where(
            tracked_folders.c.mailbox == mailbox,
            tracked_folders.c.parent_rule_path.is_(None),
            tracked_folders.c.status != "retired",
        )
    )
    return {path: folder_id for path, folder_id in rows}


def apply_plan(
    conn: Connection, mailbox: str, plans: Iterable[FolderPlan], deleted: Iterable[str] = ()
) -> list[str]:
    """Make the mailbox's rows match ``plans``; rows not planned are retired (their sync state is kept, so a
    rule that comes back resumes). Returns folder ids that are newly tracked (need a backfill pass)."""
    existing = {
        r.folder_id: r
        for r in conn.execute(select(tracked_folders).where(tracked_folders.c.mailbox == mailbox))
    }
    now = utcnow()
    new: list[str] = []
    planned: set[str] = set()
    for plan in plans:
        planned.add(plan.folder_id)
        values = dict(
            configured_path=plan.configured_path,
            current_path=plan.current_path,
            rule_source=plan.rule_source,
            parent_rule_path=plan.parent_rule_path,
            status=plan.status,
            updated_at=now,
        )
        row = existing.get(plan.folder_id)
        if row is None:
            conn.execute(
                insert(tracked_folders).values(
                    mailbox=mailbox,
                    folder_id=plan.folder_id,
                    sync_state=None,
                    backfill_done=False,
                    created_at=now,
                    **values,
                )
            )
            new.append(plan.folder_id)
        else:
            if row.status == "retired":
                new.append(plan.folder_id)
            if any(getattr(row, k) != v for k, v in values.items() if k != "updated_at"):
                conn.execute(update(tracked_folders).where(tracked_folders.c.id == row.id).values(**values))
    deleted = set(deleted)
    for folder_id, row in existing.items():
        if folder_id in planned:
            continue
        status = "deleted" if folder_id in deleted else "retired"
        if row.status != status:
            conn.execute(
                update(tracked_folders)
                .where(tracked_folders.c.id == row.id)
                .values(status=status, updated_at=now)
            )
    return new


def folder(conn: Connection, mailbox: str, folder_id: str) -> Row | None:
    return conn.execute(
        select(tracked_folders).where(
            tracked_folders.c.mailbox == mailbox, tracked_folders.c.folder_id == folder_id
        )
    ).first()


def advance_sync_state(
    conn: Connection, row_id: int, expected: str | None, new: str, *, backfill_done: bool
) -> bool:
    """Compare-and-set the folder's sync state; False when someone else advanced it meanwhile."""
    condition = (
        tracked_folders.c.sync_state.is_(None)
        if expected is None
        else tracked_folders.c.sync_state == expected
    )
    now = utcnow()
    result = conn.execute(
        update(tracked_folders)
        .where(tracked_folders.c.id == row_id, condition)
        .values(sync_state=new, backfill_done=backfill_done, last_sync_at=now, updated_at=now)
    )
    return result.rowcount == 1


def reset_sync_state(conn: Connection, row_id: int) -> None:
    conn.execute(update(tracked_folders).where(tracked_folders.c.id == row_id).values(sync_state=None))


def mark_folder_deleted(conn: Connection, mailbox: str, folder_id: str) -> None:
    conn.execute(
        update(tracked_folders)
        .where(tracked_folders.c.mailbox == mailbox, tracked_folders.c.folder_id == folder_id)
        .values(status="deleted", updated_at=utcnow())
    )


# -- mailbox health ------------------------------------------------------------------------------------------


def set_health(engine: Engine, mailbox: str, *, instance: str | None = None, **values) -> None:
    """Upsert one mailbox's health row (mode, last_event_at, last_sync_at, last_error, backlog)."""
    write_health(engine, {mailbox: values}, instance=instance)


def write_health(
    engine: Engine, rows: dict[str, dict], *, instance: str | None = None, wait: bool = True
) -> None:
    """Upsert several mailboxes' health rows in one transaction; ``wait=False`` (the watcher's timer)
    raises WriterBusy instead of waiting for our other writers."""
    now = utcnow()
    with writing(engine, wait=wait) as conn:
        for mailbox, values in rows.items():
            values = {**values, "updated_at": now, "instance": instance}
            result = conn.execute(
                update(subscription_health).where(subscription_health.c.mailbox == mailbox).values(**values)
            )
            if result.rowcount == 0:
                conn.execute(insert(subscription_health).values(mailbox=mailbox, **values))


# -- rule issues (drift) -------------------------------------------------------------------------------------


def replace_rule_issues(conn: Connection, mailbox: str, issues: Iterable[object]) -> None:
    """Make the mailbox's ``rule_issues`` rows exactly ``issues`` (``foldertrack.targets.RuleIssue``: kind,
    rule_source, path, message). Called on every resolve, in the transaction that applies its folder plan;
    an issue that persists keeps its row, so ``seen_at`` says since when it is there."""
    wanted: dict[tuple[str, str, str, str], None] = {}
    for issue in issues:
        key = (
            str(getattr(issue, "rule_source", ""))[:400],
            str(getattr(issue, "kind", "")),
            str(getattr(issue, "path", "")),
            str(getattr(issue, "message", "")),
        )
        wanted[key] = None
    existing = {
        (r.rule_source, r.kind, r.path, r.message): r.id
        for r in conn.execute(select(rule_issues).where(rule_issues.c.mailbox == mailbox))
    }
    stale = [row_id for key, row_id in existing.items() if key not in wanted]
    if stale:
        conn.execute(delete(rule_issues).where(rule_issues.c.id.in_(stale)))
    now = utcnow()
    rows = [
        dict(mailbox=mailbox, rule_source=source, kind=kind, path=path, message=message, seen_at=now)
        for source, kind, path, message in wanted
        if (source, kind, path, message) not in existing
    ]
    if rows:
        conn.execute(insert(rule_issues), rows)


def rule_issue_rows(conn: Connection, mailbox: str | None = None) -> list[Row]:
    """The stored rule issues (of one mailbox, or all), oldest first."""
    query = select(rule_issues).order_by(rule_issues.c.mailbox, rule_issues.c.id)
    if mailbox is not None:
        query = query.where(rule_issues.c.mailbox == mailbox)
    return list(conn.execute(query))
