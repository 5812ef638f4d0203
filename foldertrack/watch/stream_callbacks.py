"""What the stream readers call (on their own threads: only enqueue, never EWS), and mailbox modes."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

from foldertrack.ops.causes import classify
from foldertrack.retry import describe
from foldertrack.state.types import utcnow
from foldertrack.watch.events import FolderChanged, HierarchyChanged, SubscribeMailbox
from foldertrack.watch.mailbox import MailboxState
from foldertrack.watch.resubscribe import error_code
from foldertrack.watch.subscribing import POLL_AFTER_FAILURES

if TYPE_CHECKING:
    from foldertrack.watch.dispatcher import Dispatcher
    from foldertrack.watch.observer import WatchObserver
    from foldertrack.watch.options import WatchOptions
    from foldertrack.watch.streaming import StreamGroup

log = logging.getLogger("foldertrack.watch")

#: a folder ModifiedEvent that no item event explains reads the folder tree at most once per this many
#: seconds per mailbox (a rename shows within it; an item-count change costs no SyncFolderHierarchy each time)
FOLDER_MODIFIED_COALESCE = 2.0
_FOLDER_ATTRIBUTES = ("parent_folder_id", "old_parent_folder_id", "folder_id", "old_folder_id")


def _named_folders(event) -> set[str]:
    """Every folder id an event names: item parent, old parent, or the folder itself (never filter on type)."""
    names = {getattr(getattr(event, a, None), "id", None) for a in _FOLDER_ATTRIBUTES}
    names.discard(None)
    return names  # type: ignore[return-value]


def tree_events(events, watch_ids: frozenset[str]) -> tuple[bool, bool]:
    """(structural, modified) for the folder events naming a watched folder: ``structural`` when one can
    change the tree (a folder created, deleted, moved or copied); ``modified`` when a folder's ModifiedEvent
    is not explained by an item event of the same notification in that folder (an item moved in or out
    changes its counts, a rename does not come with one)."""
    explained: set[str] = set()
    folder_modified: set[str] = set()
    structural = False
    for event in events:
        names = _named_folders(event) & watch_ids
        if getattr(event, "item_id", None) is not None:
            explained |= names
            continue
        if getattr(event, "folder_id", None) is None or not names:
            continue
        if type(event).__name__ == "ModifiedEvent":
            folder_modified.add(event.folder_id.id)
        else:
            structural = True
    return structural, bool(folder_modified - explained)


class StreamCallbacksMixin:
    """The stream readers' callbacks (part of :class:`~foldertrack.watch.daemon.Watcher`)."""

    options: WatchOptions
    dispatcher: Dispatcher
    observer: WatchObserver
    _lock: threading.RLock
    _mailboxes: dict[str, MailboxState]
    _groups: list[StreamGroup]

    def _on_notification(self, mailbox: str, notification) -> None:
        """Enqueue one catch-up per tracked folder the notification names (however many of its events name
        it), and a folder-tree read only for events that can change the tree (see :func:`tree_events`)."""
        with self._lock:
            state = self._mailboxes.get(mailbox)
            if state is None:
                return
            targets = state.targets
            watch_ids = state.watch_ids
        events = notification.events or []
        changed: dict[str, None] = {}  # tracked folders named, in order of appearance
        for event in events:
            for folder_id in _named_folders(event):
                if folder_id in targets:
                    changed.setdefault(folder_id)
        for folder_id in changed:
            self.dispatcher.put(FolderChanged(mailbox, folder_id, "event"))
        structural, modified = tree_events(events, watch_ids)
        if structural:
            self.dispatcher.put(HierarchyChanged(mailbox, "folder-event"))
        elif modified:
            # a folder's ModifiedEvent no item event explains: a rename, or an item count on a server that
            # sends only that for a move. Read the tree, but at most once per FOLDER_MODIFIED_COALESCE s.
            wait = state.tree_read_at + FOLDER_MODIFIED_COALESCE - time.monotonic()
            self.dispatcher.put(HierarchyChanged(mailbox, "folder-modified"), delay=max(wait, 0.5))
        if events:
            self.observer.events_received(mailbox, len(events))
            state.last_event_at = utcnow()  # written to the database by the timer, never from the stream

    def _on_connected(self, mailboxes: list[str]) -> None:
        for mailbox in mailboxes:
            with self._lock:
                state = self._mailboxes.get(mailbox)
            if state is not None and state.mode != "streaming":
                self._set_mode(state, "streaming")

    def _on_stream_lost(self, mailboxes: list[str], exc: BaseException) -> None:
        for mailbox in mailboxes:
            self.observer.error(mailbox, "stream", classify(exc).code)  # the true cause (ops/causes.py)
            with self._lock:
                state = self._mailboxes.get(mailbox)
            if state is None:
                continue
            group = self._groups[state.group] if state.group is not None else None
            if state.mode == "polling":
                continue  # the poll timer syncs it anyway: another failed retry adds nothing
            if group is not None and group.failures >= POLL_AFTER_FAILURES:
                self._set_mode(state, "polling", describe(exc))
            self._catch_up_mailbox(state, "stream-lost")

    def _on_reissued(self, mailboxes: list[str], reason: str = "stream-reissued") -> None:
        """A stream's next request is open after a gap (we re-issued it to change its subscriptions:
        ``stream-reissued``, background work; or it failed: ``stream-gap``): events the server wrote to the
        old connection are lost, so the mailboxes' folders catch up."""
        for mailbox in mailboxes:
            with self._lock:
                state = self._mailboxes.get(mailbox)
                folder_ids = list(state.targets) if state else []
            for folder_id in folder_ids:
                self.dispatcher.put(FolderChanged(mailbox, folder_id, reason))

    def _on_subscriptions_lost(self, mailboxes: list[str], exc: BaseException) -> None:
        for mailbox in mailboxes:
            with self._lock:
                state = self._mailboxes.get(mailbox)
                if state is None:
                    continue
                state.subscription_id, state.group, state.subscribed_ids = None, None, frozenset()
                state.last_error = f"subscription lost: {error_code(exc)}"
            self.observer.resubscribed(mailbox, error_code(exc))
            self.dispatcher.put(SubscribeMailbox(mailbox, "subscription-lost"))
            self._catch_up_mailbox(state, "subscription-lost")

    def _catch_up_mailbox(self, state: MailboxState, reason: str) -> None:
        """Events may have been missed: re-read the folder tree and catch every tracked folder up."""
        self.dispatcher.put(HierarchyChanged(state.mailbox, reason))
        for folder_id in list(state.targets):
            self.dispatcher.put(FolderChanged(state.mailbox, folder_id, reason))

    def _set_mode(self, state: MailboxState, mode: str, error: str | None = None) -> None:
        """Change a mailbox's mode in memory (any thread, no I/O); the timer records it in the database."""
        previous = state.mode
        state.mode = mode
        state.last_error = error
        if mode == "polling":
            # each mailbox its own phase: many entering polling together must not all poll on one tick
            state.next_poll = time.monotonic() + self.options.poll_interval * random.random()
        if previous != mode:
            self.observer.mode_changed(state.mailbox, previous, mode)
            level = logging.INFO if mode == "streaming" else logging.WARNING
            log.log(
                level, "%s: mode %s → %s%s", state.mailbox, previous, mode, f" ({error})" if error else ""
            )
