"""The watcher's timer thread: polling fallback, safety-net syncs, stalled streams, dead-letter replays,
the start-up deadline (a mailbox that cannot start within ``watch.start_timeout`` is in ``error`` with its
reason, never ``starting`` for ever), and the only writer of mailbox health (so a slow database never
holds up a stream).

Each tick is O(due + changed), not O(all mailboxes) (DESIGN "Scale"): mailbox states report their changes
(:mod:`~foldertrack.watch.health_rows`), only those health rows are written, and each mailbox's next poll or
safety-net time waits in a heap; the start-up deadline looks only at mailboxes still starting."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from typing import TYPE_CHECKING

from foldertrack.ops.causes import classify
from foldertrack.ops.health import started
from foldertrack.retry import describe
from foldertrack.state import dead_letters_store
from foldertrack.watch.backfill import backfilling
from foldertrack.watch.events import FolderChanged, HierarchyChanged, SubscribeMailbox
from foldertrack.watch.health_rows import Changes, WatchedState, write_health_rows
from foldertrack.watch.mailbox import MailboxState

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from foldertrack.sync import SyncContext
    from foldertrack.watch.dispatcher import Dispatcher
    from foldertrack.watch.observer import WatchObserver
    from foldertrack.watch.options import WatchOptions
    from foldertrack.watch.streaming import StreamGroup

log = logging.getLogger("foldertrack.watch")

REPLAY_CHECK_INTERVAL = 2.0  # seconds between looks for dead letters `foldertrack retry` queued
STALL_CHECK_INTERVAL = 1.0  # seconds between looks for silent streams (their timeout is minutes)
TICK = 0.2


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
    observer: WatchObserver

    def _init_timer(self) -> None:
        """The timer's bookkeeping (call after the dispatcher is made, before any mailbox state exists)."""
        self.changes = Changes()  # mailboxes whose state or backlog changed since the last tick
        self.dispatcher.on_backlog = self.changes.backlog_changed
        self._looks: list[tuple[float, int, str]] = []  # (when, seq, mailbox): the next poll or safety net
        self._look_at: dict[str, tuple[float, int]] = {}  # mailbox → its live heap entry's (when, seq)
        self._look_seq = itertools.count()
        # not started yet: since its start work first ran (None: still queued)
        self._starting: dict[str, tuple[MailboxState, float | None]] = {}
        self._next_start_check = 0.0
        self._next_stall_check = 0.0

    def _state_for(self, mailbox: str) -> MailboxState:
        """The state of ``mailbox``, a fresh one (reporting its changes to the timer) if it has none yet
        (caller holds the lock)."""
        state = self._mailboxes.get(mailbox)
        if state is None:
            state = self._mailboxes[mailbox] = WatchedState.create(mailbox, self.changes.add)
            self._starting[mailbox] = (state, None)
        return state

    def _start_attempted(self, mailbox: str) -> None:
        """The mailbox's start work (its first resolve) runs now: its start deadline counts from here. One
        still queued behind thousands of others (a large start-up, a takeover) is starting, not failing:
        "no answer from Exchange" is said only of a mailbox whose requests went unanswered."""
        if mailbox not in self._starting:  # every later resolve (Graph: every poll) takes no lock here
            return
        with self._lock:
            entry = self._starting.get(mailbox)
            if entry is not None and entry[1] is None:
                self._starting[mailbox] = (entry[0], time.monotonic())

    def mailbox_state(self, mailbox: str) -> MailboxState | None:
        with self._lock:
            return self._mailboxes.get(mailbox)

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self._tick(time.monotonic())
            except Exception as exc:  # the timer must survive anything
                log.exception("timer: %s", describe(exc))

    def _tick(self, now: float) -> None:
        changed = self.changes.drain()
        if now >= self._next_start_check:
            self._next_start_check = now + min(1.0, self.options.start_timeout / 10)
            self._check_start_deadline(now)
        self._flush_health(changed)
        if now >= self._next_replay_check:
            self._next_replay_check = now + REPLAY_CHECK_INTERVAL
            with self.engine.connect() as conn:
                for mailbox, folder_id in dead_letters_store.replay_folders(conn):
                    self.dispatcher.put(FolderChanged(mailbox, folder_id, "retry"))
        for mailbox in changed:  # its mode, subscription or folders may have changed its poll times
            self._look_later(mailbox, now)
        while self._looks and self._looks[0][0] <= now:
            when, seq, mailbox = heapq.heappop(self._looks)
            if self._look_at.get(mailbox) != (when, seq):
                continue  # superseded entry
            del self._look_at[mailbox]
            with self._lock:
                state = self._mailboxes.get(mailbox)
            if state is not None:
                self._look(state, now)
        if len(self._looks) > 64 and len(self._looks) > 4 * len(self._look_at):
            self._looks = [(t, n, m) for t, n, m in self._looks if self._look_at.get(m) == (t, n)]
            heapq.heapify(self._looks)
        if now >= self._next_stall_check:
            self._next_stall_check = now + STALL_CHECK_INTERVAL
            self._check_stalled_streams(now)

    def _look_later(self, mailbox: str, when: float) -> None:
        """Make the timer look at ``mailbox`` at ``when`` (or earlier, if it already would)."""
        current = self._look_at.get(mailbox)
        if current is not None and current[0] <= when:
            return
        entry = (when, next(self._look_seq))
        self._look_at[mailbox] = entry
        heapq.heappush(self._looks, (*entry, mailbox))

    def _look(self, state: MailboxState, now: float) -> None:
        """A mailbox's due periodic work: its poll (polling mode, or Graph's folder tree and subscription
        renewal), its safety net; then when to look again."""
        if not state.resolved:
            return  # becoming resolved is a change: the timer looks again then
        push = getattr(self, "push", None)  # Graph change notifications (watch/graph_push.py)
        if state.mode == "polling" and now >= state.next_poll:
            state.next_poll = now + self.options.poll_interval
            for folder_id in list(state.targets):
                self.dispatcher.put(FolderChanged(state.mailbox, folder_id, "poll"))
            if not self.sync_context.mail_source().streams:  # Graph: folder tree changes by delta too
                self.dispatcher.put(HierarchyChanged(state.mailbox, "poll"))
                if push is not None and not self.dispatcher.attempts(("subscribe", state.mailbox)):
                    self.dispatcher.put(SubscribeMailbox(state.mailbox, "poll-retry"))
            elif (
                state.subscription_id is None and self.dispatcher.attempts(("subscribe", state.mailbox)) == 0
            ):
                self.dispatcher.put(SubscribeMailbox(state.mailbox, "poll-retry"))
        if push is not None and state.mode == "streaming" and now >= state.next_poll:
            state.next_poll = now + self.options.poll_interval  # the folder tree has no notifications
            self.dispatcher.put(HierarchyChanged(state.mailbox, "poll"))
            if push.due(state.mailbox):  # renewal well before expiry, re-authorisation
                self.dispatcher.put(SubscribeMailbox(state.mailbox, "renew"))
        if state.next_safety == 0.0:
            state.next_safety = now + self._safety_delay(first=True)
        elif now >= state.next_safety:
            state.next_safety = now + self._safety_delay()
            self.dispatcher.put(HierarchyChanged(state.mailbox, "safety-net"))
            for folder_id in list(state.targets):
                self.dispatcher.put(FolderChanged(state.mailbox, folder_id, "safety-net"))
        when = state.next_safety
        if state.mode == "polling" or (push is not None and state.mode == "streaming"):
            when = min(when, state.next_poll)
        self._look_later(state.mailbox, when)

    def _check_stalled_streams(self, now: float) -> None:
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

    def _check_start_deadline(self, now: float) -> None:
        """A mailbox not subscribed or polling ``start_timeout`` seconds after its start work first ran
        (Exchange unreachable, a wrong URL, refused credentials, no answer at all) goes to ``error`` with the
        real reason, and no longer holds readiness back; it keeps being retried. Only mailboxes still
        starting are looked at; one still waiting for a worker is not failing."""
        timeout = self.options.start_timeout
        with self._lock:
            starting = [(m, s, since, self._mailboxes.get(m)) for m, (s, since) in self._starting.items()]
        done: list[tuple[str, MailboxState]] = []
        for mailbox, state, since, current in starting:
            if current is not state:  # gone (lease lost, retired), or replaced by a fresh state
                done.append((mailbox, state))
                continue
            if started(state) or state.failing or state.mode in ("stopped", "polling"):
                done.append((mailbox, state))
                continue
            if since is None or now - since < timeout:
                continue
            reason = state.last_error or "no answer from Exchange"
            state.last_error = f"not started within {timeout:g}s: {reason}"
            state.failing = state.start_failed = True
            log.error("%s: %s", state.mailbox, state.last_error, extra={"mailbox": state.mailbox})
            done.append((mailbox, state))
        with self._lock:
            for mailbox, state in done:
                entry = self._starting.get(mailbox)
                if entry is not None and entry[0] is state:  # not a fresh state that came meanwhile
                    del self._starting[mailbox]
            pending = bool(self._starting)
        if not pending and not self.ready.is_set():
            self._mark_ready_if_done()  # type: ignore[attr-defined]  # SubscribingMixin

    def _backfilling(self, mailbox: str, folder_id: str) -> bool:
        """Whether the folder's next catch-up is (part of) its first sync: mails already there, not moves."""
        source = self.sync_context.mail_source()  # EWS: its connector; Graph: the source itself
        reader = self.connector if source.streams else source  # type: ignore[attr-defined]
        return backfilling(
            self.engine,
            reader,
            mailbox,
            folder_id,
            lambda exc: self.observer.error(mailbox, "folder-count", classify(exc).code),
        )

    def _safety_delay(self, *, first: bool = False) -> float:
        """The safety-net interval, ±50 % at random, so a thousand mailboxes are not all re-synced at once
        (a mail moved meanwhile would wait behind thousands of syncs). A mailbox's first one comes anywhere
        in the first round: the mailboxes watched from one moment on (start-up, a takeover) start their
        safety nets at the steady rate at once, instead of none for half a round, then a burst."""
        return self.safety_round() * (random.uniform(0.0, 1.0) if first else random.uniform(0.5, 1.5))

    def safety_round(self) -> float:
        """How long a safety-net round of every mailbox takes: ``safety_sync_interval``, or longer when the
        mailboxes' folders (and one tree read each) would start more than ``safety_sync_rate`` syncs a
        second: the safety net's CPU stays bounded at 10,000 mailboxes. Counted at most every 10 s."""
        now = time.monotonic()
        cached = getattr(self, "_safety_units", None)
        if cached is None or now - cached[1] > 10.0:
            with self._lock:
                units = sum(1 + len(s.targets) for s in self._mailboxes.values())
            cached = self._safety_units = (units, now)
        return max(self.options.safety_sync_interval, cached[0] / max(self.options.safety_sync_rate, 0.001))

    def _flush_health(self, changed: set[str]) -> None:
        """Write the health rows (mode, last error, last event time, backlog) of the mailboxes in ``changed``
        whose values differ from what was last written, in one transaction and one statement per batch.

        Only the timer writes health: stream readers and workers change memory, so a slow or locked
        database never holds up a stream. Nothing changed, nothing written: liveness is the instance's own
        heartbeat (``fleet_instances``), not a rewrite of every mailbox's row."""
        if not changed:
            return
        rows: dict[str, dict] = {}
        written: list[tuple[MailboxState, tuple]] = []
        for mailbox in changed:
            with self._lock:
                state = self._mailboxes.get(mailbox)
            if state is None or not self._owns(mailbox):  # type: ignore[attr-defined]  # LeasesMixin
                continue  # gone, or its lease went: the instance holding it writes it
            values = {**state.health(), "backlog": self.dispatcher.backlog_of(mailbox)}
            snapshot = tuple(values.values())
            if snapshot == state.health_written:
                continue
            if values["last_event_at"] is None:
                del values["last_event_at"]
            rows[mailbox] = values
            written.append((state, snapshot))
        if not rows:
            return
        try:
            write_health_rows(self.engine, rows, instance=self.options.instance)
        except Exception as exc:  # retried on the next tick; counted, and said once per streak
            self.observer.error("", "health", classify(exc).code)
            if not getattr(self, "_health_failing", False):
                self._health_failing = True
                log.warning(
                    "health rows not written (status may show old modes): %s; retrying", describe(exc)
                )
            self.changes.retry(rows)
            return
        if getattr(self, "_health_failing", False):
            self._health_failing = False
            log.info("health rows written again")
        for state, snapshot in written:
            state.health_written = snapshot
