"""Graph change notifications wired to the watcher: a notification or lifecycle event enqueues a catch-up
of its folder (and, for lifecycle events, a repair of the mailbox's subscriptions); the subscriptions
themselves are made and renewed by the ``subscribe`` work (:mod:`~foldertrack.watch.subscribing`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.push import GraphPush
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

    push = GraphPush(client, trigger, notification_url=notification_url, host=host, port=port)
    watcher.push = push.start()
    return push
