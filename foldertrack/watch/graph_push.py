"""Graph change notifications wired to the watcher: a notification or lifecycle event enqueues a catch-up
of its folder (and, for lifecycle events, a repair of the mailbox's subscriptions); the subscriptions
themselves are made and renewed by the ``subscribe`` work (:mod:`~foldertrack.watch.subscribing`).

The subscriptions are kept in the state database (``graph_subscriptions``, :class:`DatabaseSubscriptions`),
so a restarted watcher, even after ``kill -9``, or the next holder of a mailbox's lease reuses or deletes
them rather than leaving them posting to nobody until Graph expires them. Writes that depend on holding the
mailbox are fenced by its lease, like the sync cursors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.push import GraphPush, StoredSubscription
from foldertrack.state.schema import graph_subscriptions as table
from foldertrack.state.types import utcnow
from foldertrack.state.watch_store import writing
from foldertrack.watch.events import FolderChanged, SubscribeMailbox


def attach_push(
    watcher: Any, client: GraphClient, *, notification_url: str | None, host: str = "127.0.0.1", port: int = 0
) -> GraphPush:
    """Give ``watcher`` (before ``start()``) change notifications; ``watcher.stop()`` stops them."""

    def trigger(mailbox: str, folder_id: str, reason: str) -> None:  # the listener thread: only enqueue
        state = watcher._mailboxes.get(mailbox)
        if state is not None:
            state.last_event_at = datetime.now(UTC)
        watcher.dispatcher.put(FolderChanged(mailbox, folder_id, reason))
        if reason != "notification":
            watcher.dispatcher.put(SubscribeMailbox(mailbox, reason))

    push = GraphPush(
        client,
        trigger,
        notification_url=notification_url,
        host=host,
        port=port,
        store=DatabaseSubscriptions(watcher),
    )
    watcher.push = push.start()
    return push


class DatabaseSubscriptions:
    """:class:`~foldertrack.sources.graph.push.SubscriptionStore` on the watcher's state database."""

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher
        self.engine = watcher.engine
        self.instance: str = watcher.options.instance or "foldertrack"

    def load(self, mailbox: str) -> list[StoredSubscription]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.mailbox == mailbox).order_by(table.c.id)).all()
        return [_stored(r) for r in rows]

    def save(self, sub: StoredSubscription) -> None:
        values = {
            "mailbox": sub.mailbox,
            "folder_id": sub.folder_id,
            "resource": sub.resource,
            "expires_at": sub.expires_at,
            "client_state_hash": sub.client_state_hash,
            "instance": self.instance,
            "updated_at": utcnow(),
        }
        with writing(self.engine) as conn:
            self._watcher._fence(conn, sub.mailbox)
            if not conn.execute(update(table).where(table.c.id == sub.id).values(**values)).rowcount:
                conn.execute(insert(table).values(id=sub.id, created_at=values["updated_at"], **values))
        sub.instance = self.instance

    def remove(self, sub_id: str, mailbox: str) -> None:
        with writing(self.engine) as conn:
            self._watcher._fence(conn, mailbox)
            conn.execute(delete(table).where(table.c.id == sub_id))

    def release(self, sub_id: str, *, owner_only: bool = True) -> bool:
        statement = delete(table).where(table.c.id == sub_id)
        if owner_only:  # a new lease holder that adopted it has written its own name
            statement = statement.where(table.c.instance == self.instance)
        with writing(self.engine) as conn:
            return bool(conn.execute(statement).rowcount)

    def orphans(self) -> list[StoredSubscription]:
        rules = self._watcher.rules
        if rules is None:
            return []
        named = {m.lower() for m in rules.mailboxes()}
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.id)).all()
        return [_stored(r) for r in rows if r.mailbox not in named]


def _stored(row: Row) -> StoredSubscription:
    return StoredSubscription(
        id=row.id,
        mailbox=row.mailbox,
        folder_id=row.folder_id,
        resource=row.resource,
        expires_at=row.expires_at,
        client_state_hash=row.client_state_hash,
        instance=row.instance,
    )
