"""The plain-exchangelib baseline the watcher is measured against, in the same run (DESIGN "Quality bars").

The chain is what any program tracking moved mails must do at least: a streaming notification →
``SyncFolderItems`` (IdOnly) of the folder it names → ``GetItem`` of the new items with the properties the
watcher stores → one SQLite (or PostgreSQL) transaction inserting them with the folder's new sync state.
Nothing else: no rules, no ledger, no copies, no outbox. It runs in its own child process with nothing of
foldertrack imported, so exchangelib is exactly as shipped (its requests adapter, its byte-by-byte
response reading) and its CPU is not the watcher's.

``PlainChain`` follows notifications (latency); ``plain_loop`` syncs folders back to back (burst).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

#: the watcher's GetItem properties (foldertrack.exchange.items.ITEM_FIELDS) and batch size
ITEM_FIELDS = (
    "message_id",
    "conversation_id",
    "subject",
    "text_body",
    "body",
    "sender",
    "author",
    "to_recipients",
    "cc_recipients",
    "bcc_recipients",
    "datetime_sent",
    "datetime_received",
    "attachments",
    "item_class",
    "size",
    "last_modified_time",
)
GET_ITEM_CHUNK = 50
PAGE_SIZE = 512
#: the baseline's own tables (beside the watcher's in a PostgreSQL scratch database)
TABLE = "plain_activities"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (subject TEXT, message_id TEXT, sender TEXT, body TEXT,"
    " folder_id TEXT, tracked_at {time})",
    "CREATE TABLE IF NOT EXISTS plain_sync_states (folder_id TEXT PRIMARY KEY, state TEXT)",
)


def _account(url: str, mailbox: str, password: str):
    """An exchangelib account the mailbox owner opens itself (its own credentials: a protocol, sessions and
    adapter of its own, untouched by foldertrack)."""
    from exchangelib import BASIC, DELEGATE, Account, Build, Configuration, Credentials, Version
    from exchangelib import UTC as EWS_UTC

    config = Configuration(
        service_endpoint=url,
        credentials=Credentials(mailbox, password),
        auth_type=BASIC,
        version=Version(build=Build(15, 1, 2375, 7), api_version="Exchange2016"),
        max_connections=4,  # the stream holds one
    )
    return Account(mailbox, config=config, autodiscover=False, access_type=DELEGATE, default_timezone=EWS_UTC)


def _folders(account, paths: Sequence[str]):
    folders = []
    for path in paths:
        folder = account.msg_folder_root
        for name in path.split("/"):
            folder = folder / name
        folders.append(folder)
    return folders


class _Store:
    """The baseline's database: ``sqlite:///path`` (sqlite3) or ``postgresql://…`` (psycopg), one
    transaction per page inserting the page's activities and the folder's new sync state."""

    def __init__(self, url: str):
        self.pg = url.startswith("postgresql")
        if self.pg:
            import psycopg

            self.db = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
            self.mark = "%s"
        else:
            self.db = sqlite3.connect(
                url.removeprefix("sqlite:///"), isolation_level=None, timeout=30, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode = WAL")
            self.mark = "?"
        for statement in _SCHEMA:
            self.db.execute(statement.format(time="TIMESTAMPTZ" if self.pg else "TEXT"))

    def commit_page(self, folder_id: str, state: str, items: list[Any]) -> None:
        now: Any = datetime.now(UTC) if self.pg else datetime.now(UTC).isoformat()
        rows = [
            (
                i.subject,
                i.message_id,
                i.sender.email_address if i.sender else None,
                i.text_body,
                folder_id,
                now,
            )
            for i in items
        ]
        m = self.mark
        self.db.execute("BEGIN")
        if rows:
            cursor = self.db.cursor()
            cursor.executemany(f"INSERT INTO {TABLE} VALUES ({m}, {m}, {m}, {m}, {m}, {m})", rows)
        self.db.execute(f"DELETE FROM plain_sync_states WHERE folder_id = {m}", (folder_id,))
        self.db.execute(f"INSERT INTO plain_sync_states VALUES ({m}, {m})", (folder_id, state))
        self.db.execute("COMMIT")


def _sync_folder(account, folder, state: str | None, store: _Store | None) -> tuple[str, int]:
    """SyncFolderItems (IdOnly) page by page, GetItem of the creates, one transaction per page."""
    from exchangelib import Message
    from exchangelib.fields import FieldPath
    from exchangelib.items import ID_ONLY
    from exchangelib.properties import FolderId
    from exchangelib.services import GetItem, SyncFolderItems

    fields = {FieldPath(field=Message.get_field_by_fieldname(n)) for n in ITEM_FIELDS}
    count = 0
    while True:
        service = SyncFolderItems(account=account)
        changes = list(
            service.call(
                folder=FolderId(id=folder.id),
                shape=ID_ONLY,
                additional_fields=None,
                sync_state=state,
                ignore=None,
                max_changes_returned=PAGE_SIZE,
                sync_scope=None,
            )
        )
        ids = [item.id for kind, item in changes if kind == "create"]
        items: list[Any] = []
        for start in range(0, len(ids), GET_ITEM_CHUNK):
            chunk = [(i, None) for i in ids[start : start + GET_ITEM_CHUNK]]
            got = GetItem(account=account).call(items=chunk, additional_fields=fields, shape=ID_ONLY)
            items.extend(i for i in got if not isinstance(i, Exception))
        new_state = service.sync_state
        if store is not None:
            store.commit_page(folder.id, new_state, items)
        count += len(items)
        done = service.includes_last_item_in_range or new_state == state
        state = new_state
        if done:
            return state, count


# -- the latency chain (a child process following one mailbox's notifications) ----------------------------


def _chain_main(conn, url: str, mailbox: str, password: str, paths: list[str], database_url: str) -> None:
    from exchangelib import FolderCollection

    account = _account(url, mailbox, password)
    folders = _folders(account, paths)
    by_id = {f.id: f for f in folders}
    states = {f.id: _sync_folder(account, f, None, None)[0] for f in folders}  # start from "now"
    store = _Store(database_url)
    subscription = FolderCollection(account=account, folders=folders).subscribe_to_streaming()
    ready = threading.Event()
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            ready.set()
            for notification in account.inbox.get_streaming_events(subscription, connection_timeout=1):
                named: dict[str, None] = {}
                for event in notification.events:
                    for attr in ("parent_folder_id", "old_parent_folder_id"):
                        folder_id = getattr(getattr(event, attr, None), "id", None)
                        if folder_id in by_id:
                            named.setdefault(folder_id)
                for folder_id in named:
                    states[folder_id], _ = _sync_folder(account, by_id[folder_id], states[folder_id], store)
                if stop.is_set():
                    return

    thread = threading.Thread(target=follow, name="plain-chain", daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.2)  # the GetStreamingEvents request is on the wire
    conn.send("ready")
    conn.recv()  # "stop"
    stop.set()
    conn.send("stopped")


class PlainChain:
    """The baseline chain for one mailbox in a child process; its activities land in ``database_url``'s
    ``plain_activities(subject, …, tracked_at)``, which an ActivityPoller watches like the watcher's."""

    def __init__(self, url: str, mailbox: str, password: str, paths: Sequence[str], database_url: str):
        self._conn, child = mp.Pipe()
        ctx = mp.get_context("spawn")
        args = (child, url, mailbox, password, list(paths), database_url)
        self._proc = ctx.Process(target=_chain_main, args=args, daemon=True)
        self._proc.start()
        if not self._conn.poll(60) or self._conn.recv() != "ready":
            raise RuntimeError("the plain-exchangelib chain did not start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send("stop")
            self._conn.poll(5)
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()


# -- the burst loop ------------------------------------------------------------------------------------------


def _loop_main(
    conn, url: str, mailboxes: list[str], password: str, paths: list[str], database_url: str
) -> None:
    accounts = [_account(url, mailbox, password) for mailbox in mailboxes]
    work = [(account, folder) for account in accounts for folder in _folders(account, paths)]
    states = {f.id: _sync_folder(account, f, None, None)[0] for account, f in work}
    store = _Store(database_url)
    conn.send("ready")
    conn.recv()  # "go": the mails were moved
    start, cpu0 = time.monotonic(), time.process_time()
    count = sum(_sync_folder(account, f, states[f.id], store)[1] for account, f in work)
    conn.send((count, time.monotonic() - start, time.process_time() - cpu0))


def plain_loop(
    url: str, mailboxes: Sequence[str], password: str, paths: Sequence[str], database_url: str, move
) -> tuple:
    """Start the loop's process (sync states of every mailbox's folders taken now), call ``move()`` (moves
    the mails into the folders), then time one thread catching every folder up, mailbox after mailbox:
    (mails, seconds, CPU seconds)."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_loop_main,
        args=(child, url, list(mailboxes), password, list(paths), database_url),
        daemon=True,
    )
    proc.start()
    try:
        if not parent.poll(120) or parent.recv() != "ready":
            raise RuntimeError("the plain-exchangelib loop did not start")
        move()
        parent.send("go")
        if not parent.poll(300):
            raise RuntimeError("the plain-exchangelib loop did not finish")
        return parent.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
