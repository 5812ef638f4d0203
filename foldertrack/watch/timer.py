"""The watcher's timer thread: polling fallback, safety-net syncs, stalled streams, dead-letter replays,
the start-up deadline (a mailbox that cannot start within ``watch.start_timeout`` is in ``error`` with its
reason, never ``starting`` for ever), and the only writer of mailbox health (so a slow database never
holds up a stream)."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

from foldertrack.ops.health import started
from foldertrack.retry import describe
from foldertrack.state import watch_store as store
from foldertrack.watch.backfill import backfilling
from foldertrack.watch.events import FolderChanged, HierarchyChanged, SubscribeMailbox
from foldertrack.watch.mailbox import MailboxState

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from foldertrack.sync import SyncContext
    from foldertrack.watch.dispatcher import Dispatcher
    from foldertrack.watch.options import WatchOptions
    from foldertrack.watch.streaming import StreamGroup

log = logging.getLogger("foldertrack.watch")

REPLAY_CHECK_INTERVAL = 2.0  # seconds between looks for dead letters `foldertrack retry` queued


class TimerMixin:
    """The watcher's periodic work (part of :class:`~foldertrack.watch.daemon.Watcher`)."""

    options: WatchOptions
    engine: Engine
    dispatcher: Dispatcher
    _lock: threading.RLock
    _mailboxes: dict[str, MailboxState]
    _groups: list[StreamGroup]
    _stop: threading.Event
    _next_replay_check: float
    ready: threading.Event
    sync_context: SyncContext

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._tick(time.monotonic())
            except Exception as exc:  # the timer must survive anything
                log.exception("timer: %s", describe(exc))

    def _tick(self, now: float) -> None:
        with self._lock:
            states = list(self._mailboxes.values())
        self._check_start_deadline(states, now)
        self._flush_health(states)
        if now >= self._next_replay_check:
            self._next_replay_check = now + REPLAY_CHECK_INTERVAL
            with self.engine.connect() as conn:
                for mailbox, folder_id in store.replay_folders(conn):
                    self.dispatcher.put(FolderChanged(mailbox, folder_id, "retry"))
        for state in states:
            if not state.resolved:
                continue
            if state.mode == "polling" and now >= state.next_poll:
                state.next_poll = now + self.options.poll_interval
                for folder_id in list(state.targets):
                    self.dispatcher.put(FolderChanged(state.mailbox, folder_id, "poll"))
                if not self.sync_context.mail_source().streams:  # Graph: folder tree changes by delta too
                    self.dispatcher.put(HierarchyChanged(state.mailbox, "poll"))
                    if getattr(self, "push", None) is not None and not self.dispatcher.attempts(
                        ("subscribe", state.mailbox)
                    ):
                        self.dispatcher.put(SubscribeMailbox(state.mailbox, "poll-retry"))
                elif (
                    state.subscription_id is None
                    and self.dispatcher.attempts(("subscribe", state.mailbox)) == 0
                ):
                    self.dispatcher.put(SubscribeMailbox(state.mailbox, "poll-retry"))
            push = getattr(self, "push", None)  # Graph change notifications (watch/graph_push.py)
            if push is not None and state.mode == "streaming" and now >= state.next_poll:
                state.next_poll = now + self.options.poll_interval  # the folder tree has no notifications
                self.dispatcher.put(HierarchyChanged(state.mailbox, "poll"))
                if push.due(state.mailbox):  # renewal well before expiry, re-authorisation
                    self.dispatcher.put(SubscribeMailbox(state.mailbox, "renew"))
            if state.next_safety == 0.0:
                state.next_safety = now + self._safety_delay()
            elif now >= state.next_safety:
                state.next_safety = now + self._safety_delay()
                self.dispatcher.put(HierarchyChanged(state.mailbox, "safety-net"))
                for folder_id in list(state.targets):
                    self.dispatcher.put(FolderChanged(state.mailbox, folder_id, "safety-net"))
        for group in list(self._groups):
            if (
                group.size()
                and group.connected
                and now - group.last_envelope > self.options.stream_stall_timeout
            ):
                log.warning(
                    "stream %d silent for %.0fs; reconnecting", group.index, now - group.last_envelope
                )
                group.last_envelope = now
                group.kill_stream()

    def _check_start_deadline(self, states: list[MailboxState], now: float) -> None:
        """A mailbox not subscribed or polling ``start_timeout`` seconds after it appeared (Exchange
        unreachable, a wrong URL, refused credentials, no answer at all) goes to ``error`` with the real
        reason, and no longer holds readiness back; it keeps being retried."""
        first_seen: dict[str, tuple[MailboxState, float]] = self.__dict__.setdefault("_first_seen", {})
        timeout = self.options.start_timeout
        pending = False
        for state in states:
            seen = first_seen.get(state.mailbox)
            if seen is None or seen[0] is not state:  # new, or a fresh state after a lease came back
                first_seen[state.mailbox] = (state, now)
                pending = True
                continue
            if started(state) or state.failing or state.mode in ("stopped", "polling"):
                continue
            if now - seen[1] < timeout:
                pending = True
                continue
            reason = state.last_error or "no answer from Exchange"
            state.last_error = f"not started within {timeout:g}s: {reason}"
            state.failing = state.start_failed = True
            log.error("%s: %s", state.mailbox, state.last_error, extra={"mailbox": state.mailbox})
        if len(first_seen) > len(states):
            live = {s.mailbox for s in states}
            for mailbox in [m for m in first_seen if m not in live]:
                del first_seen[mailbox]
        if not pending and not self.ready.is_set():
            self._mark_ready_if_done()  # type: ignore[attr-defined]  # SubscribingMixin

    def _backfilling(self, mailbox: str, folder_id: str) -> bool:
        """Whether the folder's next catch-up is (part of) its first sync: mails already there, not moves."""
        source = self.sync_context.mail_source()  # EWS: its connector; Graph: the source itself
        reader = self.connector if source.streams else source  # type: ignore[attr-defined]
        return backfilling(self.engine, reader, mailbox, folder_id)

    def _safety_delay(self) -> float:
        """The safety-net interval, ±50 % at random, so a thousand mailboxes are not all re-synced at once
        (a mail moved meanwhile would wait behind thousands of syncs)."""
        return self.options.safety_sync_interval * random.uniform(0.5, 1.5)

    def _flush_health(self, states: list[MailboxState]) -> None:
        """Write each mailbox's mode, last error, last event time and backlog to its health row when they
        changed, all in one transaction.

        Only the timer writes health: stream readers and workers change memory, so a slow or locked
        database never holds up a stream."""
        backlog = self.dispatcher.backlog()
        changed: dict[str, dict] = {}
        snapshots: dict[str, tuple] = {}
        for state in states:
            if not self._owns(state.mailbox):  # fleet: its lease went; the instance holding it writes it
                continue
            values = {**state.health(), "backlog": backlog.get(state.mailbox, 0)}
            snapshot = tuple(values.values())
            if snapshot == state.health_written:
                continue
            if values["last_event_at"] is None:
                del values["last_event_at"]
            changed[state.mailbox] = values
            snapshots[state.mailbox] = snapshot
        if not changed:
            return
        try:
            store.write_health(self.engine, changed, instance=self.options.instance, wait=False)
        except Exception as exc:  # health is advisory; retried on the next tick
            log.debug("health update failed: %s", describe(exc))
            return
        for state in states:
            if state.mailbox in snapshots:
                state.health_written = snapshots[state.mailbox]
