"""What the stream readers call (on their own threads: only enqueue, never EWS), and mailbox modes."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

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


class StreamCallbacksMixin:
    """The stream readers' callbacks (part of :class:`~foldertrack.watch.daemon.Watcher`)."""

    options: WatchOptions
    dispatcher: Dispatcher
    observer: WatchObserver
    _lock: threading.RLock
    _mailboxes: dict[str, MailboxState]
    _groups: list[StreamGroup]

    def _on_notification(self, mailbox: str, notification) -> None:
        with self._lock:
            state = self._mailboxes.get(mailbox)
            if state is None:
                return
            targets = state.targets
            watch_ids = state.watch_ids
        for event in notification.events or []:
            names = {
                getattr(getattr(event, a, None), "id", None)
                for a in ("parent_folder_id", "old_parent_folder_id", "folder_id", "old_folder_id")
            }
            names.discard(None)
            for folder_id in names & set(targets):
                self.dispatcher.put(FolderChanged(mailbox, folder_id, "event"))
            is_folder_event = (
                getattr(event, "folder_id", None) is not None and getattr(event, "item_id", None) is None
            )
            if is_folder_event and names & watch_ids:
                self.dispatcher.put(HierarchyChanged(mailbox, "folder-event"))
        if notification.events:
            self.observer.events_received(mailbox, len(notification.events))
            state.last_event_at = utcnow()  # written to the database by the timer, never from the stream

    def _on_connected(self, mailboxes: list[str]) -> None:
        for mailbox in mailboxes:
            with self._lock:
                state = self._mailboxes.get(mailbox)
            if state is not None and state.mode != "streaming":
                self._set_mode(state, "streaming")

    def _on_stream_lost(self, mailboxes: list[str], exc: BaseException) -> None:
        for mailbox in mailboxes:
            self.observer.error(mailbox, "stream", type(exc).__name__)
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

    def _on_reissued(self, mailboxes: list[str]) -> None:
        """We re-issued a stream to change its subscriptions: events in flight may be lost, folders catch up."""
        for mailbox in mailboxes:
            with self._lock:
                state = self._mailboxes.get(mailbox)
                folder_ids = list(state.targets) if state else []
            for folder_id in folder_ids:
                self.dispatcher.put(FolderChanged(mailbox, folder_id, "stream-reissued"))

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
