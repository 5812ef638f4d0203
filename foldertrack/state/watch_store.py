"""The watcher's own state: tracked folders and their sync states, the ledger, activity links, conflicts,
dead letters and mailbox health. Functions take a connection so a caller can put several writes (and the
SQL sink's) into one transaction: that is what makes tracking exactly once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.engine import Row

from foldertrack.state.database import SQLITE_BEGIN_OPTION
from foldertrack.state.schema import (
    activity_links,
    conflicts,
    dead_letters,
    key_collisions,
    ledger,
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
