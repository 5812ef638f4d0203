"""Catch one tracked folder up with Exchange: SyncFolderItems since its saved sync state, decide, commit.

Each page of changes (at most ``PAGE_SIZE``) is applied in one database transaction together with the
sync state that follows it: activity, ledger rows and sync state commit together or not at all. A crash
anywhere therefore resumes from the last committed page, and replaying a page changes nothing because
the ledger knows what was done. Items that fail are retried (the page's sync state is not advanced) until
``max_attempts``, then dead-lettered so one poison mail never holds the folder back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from foldertrack import copies
from foldertrack.delivery.decisions import OutboxWriter
from foldertrack.errors import PermanentSinkError
from foldertrack.exchange.bounds import fingerprint
from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.model import Activity, RecordRef
from foldertrack.retry import describe
from foldertrack.sinks.base import ActivitySink
from foldertrack.sources.base import CursorInvalid, FolderMissing, MailSource
from foldertrack.sources.ews import EwsSource
from foldertrack.state import dead_letters_store, ledger_store, page_batch
from foldertrack.state import watch_store as store
from foldertrack.state.page_batch import BatchAborted
from foldertrack.targets import Target

log = logging.getLogger(__name__)

PAGE_SIZE = 512
EMPTY_SYNC_WRITE_INTERVAL = timedelta(minutes=1)


class ItemsNeedRetry(Exception):
    """Some items of a page failed for the first times: the page is retried later (its state not advanced)."""


class FolderGone(Exception):
    """The tracked folder no longer exists in Exchange."""


@dataclass
class SyncResult:
    """What one catch-up did; the counts feed logs, status and metrics."""

    pages: int = 0
    tracked: int = 0
    relinked: int = 0
    untracked: int = 0
    left: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    conflicts: int = 0
    collisions: int = 0  # a different mail reusing a tracked mail's Message-ID: not tracked, flagged
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (outcome, key, subject)


@dataclass
class SyncContext:
    """What the synchroniser needs from the daemon; ``resolve_address`` maps an address to a known record."""

    engine: Engine
    connector: ExchangeConnector
    sink: ActivitySink
    resolve_address: Callable[[str], RecordRef | None]
    max_attachment_bytes: int
    max_attempts: int
    on_tracked: Callable[[Target, Activity, str], None] | None = None
    on_page: Callable[[], None] | None = None  # each committed page: progress, for the service watchdog
    outbox: OutboxWriter = field(default_factory=OutboxWriter)  # decisions for an external sink (delivery)
    # raises LeaseLostError in a write transaction once another instance took the mailbox over (fleet)
    fence: Callable[[Connection], None] | None = None
    source: MailSource | None = None  # where mail is read (foldertrack.sources); None: EWS via ``connector``

    def mail_source(self) -> MailSource:
        if self.source is None:
            self.source = EwsSource(self.connector)
        return self.source


def catch_up(ctx: SyncContext, target: Target) -> SyncResult:
    """Bring ``target`` up to date with Exchange; raises transient errors for the dispatcher to retry."""
    result = SyncResult()
    source = ctx.mail_source()
    resynced = False
    replay: list[str] | None = None
    while True:
        with ctx.engine.connect() as conn:  # one checkout for what a page needs to know first
            if replay is None:
                replay = dead_letters_store.replay_item_ids(conn, target.mailbox, target.folder_id)
            row = store.folder(conn, target.mailbox, target.folder_id)
        if row is None:
            return result  # no longer tracked
        state = row.sync_state
        try:
            page = source.changes(target.mailbox, target.folder_id, state, PAGE_SIZE)
        except CursorInvalid as exc:
            if resynced:
                raise (exc.__cause__ or exc) from None
            log.warning(
                "%s %s: sync state rejected by %s; resyncing from scratch",
                target.mailbox,
                target.path,
                source.name,
            )
            with store.writing(ctx.engine) as conn:
                if ctx.fence is not None:
                    ctx.fence(conn)
                store.reset_sync_state(conn, row.id)
            resynced = True
            continue
        except FolderMissing as exc:
            raise FolderGone(target.folder_id) from exc
        changes, new_state, last_page = page.changes, page.cursor, page.last
        backfill_pass = state is None or not row.backfill_done  # every page of the first sync
        _apply_page(ctx, target, row, state, new_state, changes, backfill_pass, last_page, result, replay)
        replay = []
        result.pages += 1
        if ctx.on_page is not None:
            ctx.on_page()
        if last_page or new_state == state:
            return result


def _apply_page(
    ctx: SyncContext,
    target: Target,
    row,
    state: str | None,
    new_state: str,
    changes,
    backfill_pass: bool,
    last_page: bool,
    result: SyncResult,
    replay: list[str],
) -> None:
    if not changes and not replay and state is not None and row.backfill_done and _synced_lately(row):
        return  # nothing happened: keep the saved sync state (still valid) and write nothing
    creates = [
        (item.id, getattr(item, "datetime_received", None)) for kind, item in changes if kind == "create"
    ]
    deletes = [item.id for kind, item in changes if kind == "delete"]
    already: set[str] = set()
    dead: set[str] = set()
    if creates:  # what is known of them already (an empty page, a safety net's, has nothing to ask)
        with ctx.engine.connect() as conn:
            already = ledger_store.present_item_ids(
                conn, target.mailbox, target.folder_id, [i for i, _ in creates]
            )
            dead = dead_letters_store.dead_item_ids(conn, target.mailbox, target.folder_id)
    cutoff = _backfill_cutoff(target, row) if backfill_pass and not row.backfill_done else None
    wanted: list[str] = []
    before_cutoff = 0
    for item_id, received in creates:
        if item_id in already or item_id in dead:
            continue
        if cutoff is not None and (received is None or received < cutoff):  # unknown age: not backfilled
            before_cutoff += 1
            continue
        wanted.append(item_id)
    if before_cutoff:  # every skip has a reason in the log (one line per page, not per mail)
        result.skipped += before_cutoff
        log.info(
            "%s %s: %d mail(s) not backfilled: received before %s (backfill: false / backfill_since)",
            target.mailbox,
            target.path,
            before_cutoff,
            cutoff.isoformat(timespec="seconds") if cutoff else "?",
        )
    wanted.extend(i for i in replay if i not in wanted)  # `foldertrack retry` replays, retrying items
    source = ctx.mail_source()
    fetched = source.fetch(
        ctx.engine,
        target,
        wanted,
        max_attachment_bytes=ctx.max_attachment_bytes,
        resolve_address=_memo(ctx.resolve_address),  # one lookup per distinct address per page
    )
    activities, arrivals, gone, failed = fetched.activities, fetched.arrivals, fetched.gone, fetched.failed
    result.skipped += fetched.skipped
    moved = source.moved_copies(ctx.engine, target, activities) if activities else set()
    untracks = getattr(target.rule, "on_leave", "keep") in ("untrack", "delete")
    stale = source.stale_copies(ctx.engine, target, deletes) if deletes and untracks else set()
    keys = [a.key for a in activities.values()]
    known: tuple[str, BaseException | None] | None = None
    page = _Page(target, row, state, new_state, last_page, activities, arrivals, moved, deletes, gone, stale)
    if len(set(keys)) == len(keys):  # one mail key twice in a page: the careful way from the start
        trial, tried_failed, tracked = replace(result, events=list(result.events)), list(failed), []
        try:
            _write_page(replace(ctx, on_tracked=lambda *a: tracked.append(a)), page, tried_failed, trial)
        except BatchAborted as aborted:
            log.debug("%s %s: an item failed in a batched page; applying it item by item", *page.names)
            known = (aborted.item_id, aborted.__cause__)  # not asked of the sink twice in one attempt
        except ItemsNeedRetry:
            _adopt(ctx, result, trial, tracked)
            raise
        else:
            _adopt(ctx, result, trial, tracked)
            return
    _write_page(ctx, page, failed, result, batched=False, known=known)


def _adopt(ctx: SyncContext, result: SyncResult, trial: SyncResult, tracked: list[tuple]) -> None:
    """The batched attempt committed: its counts are the page's, and its tracked mails are reported."""
    for name in SyncResult.__dataclass_fields__:
        setattr(result, name, getattr(trial, name))
    if ctx.on_tracked is not None:
        for args in tracked:
            ctx.on_tracked(*args)


@dataclass(frozen=True)
class _Page:
    """What one sync page decided to write."""

    target: Target
    row: Any  # the tracked_folders row
    state: str | None
    new_state: str
    last_page: bool
    activities: dict[str, Activity]
    arrivals: dict
    moved: set[str]
    deletes: list[str]
    gone: list[str]
    stale: set[int]  # ledger rows elsewhere whose items are gone (the mail moved on from there too)

    @property
    def names(self) -> tuple[str, str]:
        return self.target.mailbox, self.target.path


def _write_page(
    ctx: SyncContext,
    page: _Page,
    failed: list,
    result: SyncResult,
    batched: bool = True,
    known: tuple[str, BaseException | None] | None = None,
) -> None:
    """The page's one transaction. Batched: the decisions' reads come from a few queries and new rows go
    in multi-row inserts, with no savepoint (an item failing raises BatchAborted: the caller rolls back
    and comes here again unbatched, a savepoint per item, so the failure is isolated to that item)."""
    target, row, state, new_state = page.target, page.row, page.state, page.new_state
    with store.writing(ctx.engine) as conn:
        if ctx.fence is not None:
            ctx.fence(conn)
        keys = [a.key for a in page.activities.values()]
        batch = page_batch.PageBatch.load(conn, target.mailbox, target.folder_id, keys) if batched else None
        with page_batch.attached(conn, batch) if batch is not None else nullcontext():
            for item_id, activity in page.activities.items():
                if known is not None and item_id == known[0] and isinstance(known[1], PermanentSinkError):
                    failed.append((item_id, known[1], activity))  # what the batched attempt was told
                    continue
                try:
                    with conn.begin_nested() if batch is None else nullcontext():
                        outcome = _track(
                            ctx,
                            conn,
                            target,
                            item_id,
                            activity,
                            arrived_at=page.arrivals.get(item_id),
                            owner_moved=activity.key in page.moved,
                        )
                except PermanentSinkError as exc:
                    if batch is not None:
                        raise BatchAborted(item_id) from exc
                    failed.append((item_id, exc, activity))
                    continue
                _count(result, outcome, activity)
                (batch or dead_letters_store).clear_failure(conn, target.mailbox, target.folder_id, item_id)
            if batch is not None:
                batch.flush(conn)
            for item_id in page.deletes:
                _left(ctx, conn, target, item_id, result, page.stale)
        for item_id in page.gone:
            if dead_letters_store.forget_failure(conn, target.mailbox, target.folder_id, item_id):
                log.info(
                    "%s %s: a failing item no longer exists here; no longer retried",
                    target.mailbox,
                    target.path,
                )
        retry_later = _record_failures(ctx, conn, target, failed, result)
        advanced = True
        if not retry_later:
            done = row.backfill_done or page.last_page
            advanced = store.advance_sync_state(conn, row.id, state, new_state, backfill_done=done)
        if not advanced:
            conn.rollback()  # someone else applied this page already
    if not advanced:
        log.info("%s %s: sync state moved on meanwhile; page discarded", target.mailbox, target.path)
        return
    if retry_later:
        raise ItemsNeedRetry(f"{len(failed)} item(s) in {target.path} failed; will retry")


def _memo(resolve: Callable[[str], RecordRef | None]) -> Callable[[str], RecordRef | None]:
    """The page's address lookups: a mail's parties repeat across a page (the same customers, the
    mailbox itself), so each distinct address is looked up once per page, not once per party."""
    known: dict[str, RecordRef | None] = {}

    def lookup(address: str) -> RecordRef | None:
        if address not in known:
            known[address] = resolve(address)
        return known[address]

    return lookup


def _synced_lately(row) -> bool:
    """Whether ``status`` already shows a recent "last sync" for the folder (then an empty sync need not
    write at all; otherwise it records its time once a minute)."""
    last = row.last_sync_at
    if last is None:
        return False
    last = last if last.tzinfo else last.replace(tzinfo=UTC)
    return datetime.now(UTC) - last < EMPTY_SYNC_WRITE_INTERVAL


def _backfill_cutoff(target: Target, row) -> datetime | None:
    """Mails received before this are not backfilled (``backfill: false`` or ``backfill_since``)."""
    rule = target.rule
    since: timedelta | None = getattr(rule, "backfill_since", None)
    if since is not None:
        return datetime.now(UTC) - since
    if not getattr(rule, "backfill", True):
        created = row.created_at
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        # EWS gives DateTimeReceived in whole seconds: a mail received in the second the rule appeared is new
        return created.replace(microsecond=0)
    return None


def _record_failures(ctx: SyncContext, conn: Connection, target: Target, failed, result: SyncResult) -> bool:
    """Count the failures; True when at least one item still has attempts left (retry the page)."""
    retry_later = False
    for item_id, exc, activity in failed:
        attempts = dead_letters_store.record_failure(
            conn,
            target.mailbox,
            target.folder_id,
            item_id,
            describe(exc),
            max_attempts=ctx.max_attempts,
            mail_key=activity.key if activity else None,
            subject=activity.subject if activity else None,
        )
        if attempts >= ctx.max_attempts:
            log.error(
                "%s %s: item dead-lettered after %d attempts: %s",
                target.mailbox,
                target.path,
                attempts,
                describe(exc),
            )
            result.dead_lettered += 1
        else:
            log.warning(
                "%s %s: item failed (attempt %d of %d): %s",
                target.mailbox,
                target.path,
                attempts,
                ctx.max_attempts,
                describe(exc),
            )
            retry_later = True
    return retry_later


def _count(result: SyncResult, outcome: str, activity: Activity) -> None:
    if outcome == "tracked":
        result.tracked += 1
    elif outcome == "relinked":
        result.relinked += 1
    elif outcome == "conflict":
        result.conflicts += 1
    elif outcome == "collision":
        result.collisions += 1
    if outcome != "unchanged":
        result.events.append((outcome, activity.key, activity.subject or ""))


def _track(
    ctx: SyncContext,
    conn: Connection,
    target: Target,
    item_id: str,
    activity: Activity,
    *,
    arrived_at: datetime | None = None,
    owner_moved: bool = False,
) -> str:
    """The mail is in a tracked folder: record it and decide its activity's regarding (DESIGN semantics).

    A different mail reusing the key (same Message-ID, other sender, sent time or subject) is a
    collision: recorded, logged, not tracked; the tracked activity keeps its content. Of two copies of one
    mail in tracked folders of one mailbox, the one that arrived later (the server's time) decides the
    regarding, whichever folder is caught up first."""
    key = activity.key
    page = page_batch.of(conn) or ledger_store  # a batched page answers from memory and queues new rows
    entry = page.ledger_entry(conn, target.mailbox, key, target.folder_id)
    if entry is not None and entry.state == "present" and entry.item_id == item_id:
        return "unchanged"
    current = page.link(conn, key)
    content = fingerprint(activity)
    if current is not None and current.fingerprint is not None and current.fingerprint != content:
        copies.record_collision(conn, target, item_id, activity, content, current.fingerprint)
        return "collision"
    page.ledger_present(conn, target.mailbox, key, target.folder_id, item_id)
    policy = getattr(target.rule, "duplicates", "first_wins")
    outcome = "tracked"
    if current is not None:
        same_owner = current.owner_mailbox == target.mailbox
        takes_over = same_owner or current.state == "untracked" or policy == "last_wins"
        if same_owner and not owner_moved and copies.arrived_earlier(conn, current, target, key, arrived_at):
            takes_over = False
        previous = _regarding_of(current)
        if previous != target.record and not same_owner and current.state == "tracked":
            ledger_store.add_conflict(
                conn,
                key,
                target.mailbox,
                target.folder_id,
                policy,
                kept=str(target.record)
                if takes_over and target.record
                else (str(previous) if previous else None),
                other=(str(previous) if previous else None)
                if takes_over
                else (str(target.record) if target.record else None),
            )
            outcome = "conflict" if not takes_over else "relinked"
        if not takes_over:
            return "duplicate" if outcome == "tracked" else outcome  # nothing changed: not "tracked"
        if outcome == "tracked":
            outcome = "relinked" if previous != target.record or current.state == "untracked" else "refiled"
    page.put_link(
        conn,
        key,
        owner_mailbox=target.mailbox,
        owner_folder_id=target.folder_id,
        regarding=target.record,
        state="tracked",
        exists=current is not None,
        fingerprint=content,
        arrived_at=arrived_at,
    )
    sink_conn = conn if ctx.sink.shares_state_database else None
    ctx.sink.upsert(replace(activity, regarding=target.record, state="tracked"), sink_conn)
    ctx.outbox.tracked(conn, key, target.mailbox, target.rule)
    if ctx.on_tracked is not None:
        ctx.on_tracked(target, activity, outcome)
    return outcome


def _left(
    ctx: SyncContext, conn: Connection, target: Target, item_id: str, result: SyncResult, stale: set[int]
) -> None:
    """The item left the folder (moved out, deleted, or moved to another tracked folder)."""
    entry = ledger_store.ledger_by_item(conn, target.mailbox, target.folder_id, item_id)
    if entry is None or entry.state != "present":
        return
    ledger_store.ledger_left(conn, entry.id)
    result.left += 1
    policy = getattr(target.rule, "on_leave", "keep")
    if policy not in ("untrack", "delete"):
        return
    current = ledger_store.link(conn, entry.activity_key)
    if current is None or current.state != "tracked" or current.owner_mailbox != target.mailbox:
        return
    if current.owner_folder_id != target.folder_id:
        # a late departure: the mail was re-linked to another folder since it left this one; that
        # folder's own catch-up applies *its* on_leave when the mail leaves it
        return
    for other in ledger_store.present_entries(conn, entry.activity_key):
        if other.id in stale:  # gone from that folder too: its catch-up is behind, Exchange is not
            ledger_store.ledger_left(conn, other.id)
    if ledger_store.still_present(conn, entry.activity_key):
        return  # moved to another tracked folder: that folder's sync re-links it
    ledger_store.put_link(
        conn,
        entry.activity_key,
        owner_mailbox=current.owner_mailbox,
        owner_folder_id=current.owner_folder_id,
        regarding=None,
        state="untracked",
        exists=True,
    )
    ctx.sink.untrack(entry.activity_key, conn if ctx.sink.shares_state_database else None)
    ctx.outbox.left(conn, entry.activity_key, target.mailbox, target.rule, policy)
    result.untracked += 1
    result.events.append(("untracked" if policy == "untrack" else "deleted", entry.activity_key, ""))


def _regarding_of(row) -> RecordRef | None:
    if row.regarding_type is None:
        return None
    return RecordRef(row.regarding_type, row.regarding_id, row.regarding_name)
