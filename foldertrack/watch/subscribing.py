"""Streaming subscriptions: subscribe a mailbox's folders, place it on a shared stream, drop or
unsubscribe it, and tell when every mailbox has started (readiness)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from exchangelib.properties import FolderId
from exchangelib.services import SubscribeToStreaming, Unsubscribe

from foldertrack.retry import describe
from foldertrack.watch.dispatcher import Reschedule
from foldertrack.watch.events import FolderChanged
from foldertrack.watch.mailbox import MailboxState
from foldertrack.watch.resubscribe import ResubscribeLimiter
from foldertrack.watch.streaming import StreamGroup, Subscription

if TYPE_CHECKING:
    from foldertrack.exchange.connection import ExchangeConnector
    from foldertrack.sync import SyncContext
    from foldertrack.watch.options import WatchOptions

log = logging.getLogger("foldertrack.watch")

EVENT_TYPES = ("CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "NewMailEvent")
POLL_AFTER_FAILURES = 2  # subscription or stream failures in a row before a mailbox polls


class SubscribingMixin:
    """The watcher's subscriptions (part of :class:`~foldertrack.watch.daemon.Watcher`)."""

    options: WatchOptions
    connector: ExchangeConnector
    ready: threading.Event
    _lock: threading.RLock
    _placing: threading.Lock  # held while a subscription picks its stream and joins it
    _mailboxes: dict[str, MailboxState]
    _groups: list[StreamGroup]
    resubscribes: ResubscribeLimiter
    sync_context: SyncContext

    def _subscribe(self, mailbox: str) -> None:
        with self._lock:
            state = self._mailboxes.get(mailbox)
        if state is None or not state.watch_ids:
            return
        if not self.sync_context.mail_source().streams:  # Graph: the poll timer triggers the catch-ups
            self._poll_only(state)
            return
        wait = self.resubscribes.acquire(mailbox)
        if wait:  # subscribed too often lately: poll meanwhile, try again later (status shows why)
            recent, window = self.resubscribes.recent(mailbox), self.resubscribes.window
            self._set_mode(
                state,
                "polling",
                f"subscribed {recent} times in {window:.0f}s ({state.last_error or 'subscription lost'}); "
                f"next attempt in {wait:.0f}s",
            )
            self._mark_ready_if_done()
            raise Reschedule(wait)
        self._drop_subscription(state)
        account = self.connector.account(mailbox)
        try:
            sub_id = SubscribeToStreaming(account=account).get(
                folders=[FolderId(id=f) for f in sorted(state.watch_ids)], event_types=EVENT_TYPES
            )
        except Exception as exc:
            state.subscribe_failures += 1
            if state.subscribe_failures >= POLL_AFTER_FAILURES:
                self._set_mode(state, "polling", describe(exc))
            self._mark_ready_if_done()
            raise
        state.subscribe_failures = 0
        state.failing = False
        with self._placing:  # choosing a stream with room and joining it is one step: two workers placing
            group = self._group_with_room()  # at once would both find the last free seat
            with self._lock:
                state.subscription_id = sub_id
                state.subscribed_ids = state.watch_ids
                state.group = group.index
            group.add(Subscription(mailbox, sub_id, state.watch_ids))
        log.info("%s: subscribed to %d folder(s) (stream %d)", mailbox, len(state.watch_ids), group.index)
        # Streaming has no watermark: whatever happened before this point is read by a catch-up sync, of
        # the folders and of the folder tree (a folder created or renamed meanwhile).
        self._catch_up_mailbox(state, "resubscribed")
        self._mark_ready_if_done()

    def _poll_only(self, state: MailboxState) -> None:
        """A source without streaming (Graph): change notifications when configured (``self.push``), else
        (or while they fail) the mailbox polls its delta chains every ``poll_interval``."""
        push = getattr(self, "push", None)
        if push is not None:
            try:
                created = push.subscribe(state.mailbox, frozenset(state.targets))
            except Exception as exc:
                self._set_mode(state, "polling", describe(exc))
                self._mark_ready_if_done()
                raise
            with self._lock:
                state.subscribed_ids = state.watch_ids
            was = state.mode
            if was != "streaming":
                self._set_mode(state, "streaming")
            state.failing = False
            if created or was != "streaming":  # nothing was notified before a subscription existed
                for folder_id in list(state.targets):
                    self.dispatcher.put(FolderChanged(state.mailbox, folder_id, "resubscribed"))
            self._mark_ready_if_done()
            return
        with self._lock:
            state.subscribed_ids = state.watch_ids
        if state.mode != "polling":
            self._set_mode(state, "polling")
        state.failing = False
        for folder_id in list(state.targets):
            self.dispatcher.put(FolderChanged(state.mailbox, folder_id, "polling"))
        self._mark_ready_if_done()

    def _drop_subscription(self, state: MailboxState) -> None:
        if state.subscription_id is None:
            return
        old, group_index = state.subscription_id, state.group
        state.subscription_id, state.group, state.subscribed_ids = None, None, frozenset()
        if group_index is not None and group_index < len(self._groups):
            self._groups[group_index].remove(old)
        try:
            Unsubscribe(account=self.connector.account(state.mailbox)).get(subscription_id=old)
        except Exception as exc:
            log.debug("%s: unsubscribe of old subscription failed: %s", state.mailbox, describe(exc))

    def _unsubscribe_all(self, states: list[MailboxState], deadline: float) -> None:
        """Unsubscribe in parallel, giving up at ``deadline`` (the server expires them anyway)."""
        if not states:
            return

        def unsubscribe(state: MailboxState) -> None:
            try:
                Unsubscribe(account=self.connector.account(state.mailbox)).get(
                    subscription_id=state.subscription_id
                )
            except Exception as exc:
                log.debug("%s: unsubscribe failed: %s", state.mailbox, describe(exc))

        pool = ThreadPoolExecutor(
            max_workers=max(1, self.options.workers), thread_name_prefix="foldertrack-stop"
        )
        futures = [pool.submit(unsubscribe, state) for state in states]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        pool.shutdown(wait=False, cancel_futures=True)

    def _group_with_room(self) -> StreamGroup:
        with self._lock:
            per_stream = self.options.streams_per_connection
            if any(g.refuses_mixed_users for g in self._groups):
                per_stream = 1  # the server serves one user's subscriptions per stream
            for group in self._groups:
                if group.size() < per_stream:
                    return group
            group = StreamGroup(
                len(self._groups),
                self.connector,
                on_notification=self._on_notification,
                on_stream_lost=self._on_stream_lost,
                on_subscriptions_lost=self._on_subscriptions_lost,
                on_connected=self._on_connected,
                on_reissued=self._on_reissued,
                connection_timeout_minutes=self.options.stream_timeout_minutes,
            )
            self._groups.append(group)
            group.start()
            return group

    def _mark_ready_if_done(self) -> None:
        if self.ready.is_set():
            return  # called after every subscription: no walk over every mailbox once ready
        with self._lock:
            # a mailbox whose start failed (no such mailbox, no impersonation right, a mailbox move that
            # lasts hours) must not hold the others back: status and health show its error, and it is
            # retried with back-off
            done = all(
                s.start_failed
                or (s.resolved and (s.subscription_id or s.mode == "polling" or not s.watch_ids))
                or (s.resolved and s.mode == "streaming" and getattr(self, "push", None) is not None)
                for s in self._mailboxes.values()
            )
        if done and not self.ready.is_set():
            self.ready.set()
            log.info("watching %d mailbox(es)", len(self._mailboxes))
