"""The watcher daemon: rules → tracked folders → subscriptions → catch-up syncs → activities → delivery.

Threads: one per streaming connection (only enqueue), the dispatcher's workers (all EWS and database
work), one timer (polling fallback, safety-net syncs, stalled-stream detection), watchdog's observer
for the rules directory, and, for a sink other than ``sql``, the delivery workers
(:mod:`foldertrack.delivery`). ``Watcher.check()`` tells a supervisor whether every thread is alive.

The work is split by job: :mod:`~foldertrack.watch.resolving` (rules → folders),
:mod:`~foldertrack.watch.subscribing` (subscriptions), :mod:`~foldertrack.watch.stream_callbacks` (what
stream readers call), :mod:`~foldertrack.watch.timer` (periodic work); this module holds the lifecycle and
the dispatcher's handler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from exchangelib.errors import ErrorServerBusy
from sqlalchemy import Engine

from foldertrack.delivery.decisions import OutboxWriter
from foldertrack.delivery.service import DeliveryService
from foldertrack.errors import LeaseLostError, RuleError
from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.ops.causes import classify
from foldertrack.ops.rules_state import RulesState
from foldertrack.retry import describe, is_transient, server_back_off
from foldertrack.rules.loader import load_rules
from foldertrack.sinks.base import ActivitySink
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.sources.base import MailSource
from foldertrack.sources.graph.errors import GraphThrottled
from foldertrack.state import watch_store as store
from foldertrack.state.records import RecordDirectory
from foldertrack.sync import FolderGone, ItemsNeedRetry, SyncContext, SyncResult, catch_up
from foldertrack.targets import Target
from foldertrack.watch.dispatcher import Dispatcher, Reschedule, WorkKey
from foldertrack.watch.events import HierarchyChanged
from foldertrack.watch.leases import LeasesMixin
from foldertrack.watch.mailbox import MailboxState
from foldertrack.watch.observer import WatchObserver
from foldertrack.watch.options import WatchOptions
from foldertrack.watch.resolving import FULL_RESOLVE_REASONS, ResolvingMixin
from foldertrack.watch.resubscribe import ResubscribeLimiter
from foldertrack.watch.stream_callbacks import StreamCallbacksMixin
from foldertrack.watch.streaming import StreamGroup
from foldertrack.watch.subscribing import EVENT_TYPES, POLL_AFTER_FAILURES, SubscribingMixin
from foldertrack.watch.timer import REPLAY_CHECK_INTERVAL, TimerMixin

log = logging.getLogger("foldertrack.watch")

__all__ = [
    "EVENT_TYPES",
    "FULL_RESOLVE_REASONS",
    "POLL_AFTER_FAILURES",
    "REPLAY_CHECK_INTERVAL",
    "WatchOptions",
    "Watcher",
]


class Watcher(LeasesMixin, ResolvingMixin, SubscribingMixin, StreamCallbacksMixin, TimerMixin):
    """Watches every mailbox named in the rules. ``start()``, then ``stop()``; ``reload_rules()`` any time.

    ``sink`` is the configured sink plug-in. The local activity tables are always written in the sync
    transaction; a sink that does not share the state database (Dataverse, webhook) is fed from the
    outbox by a :class:`~foldertrack.delivery.service.DeliveryService` (``self.delivery``), with the
    optional mailbox ``feedback``.
    """

    def __init__(
        self,
        options: WatchOptions,
        engine: Engine,
        connector: ExchangeConnector,
        sink: ActivitySink,
        *,
        on_tracked: Callable[[Target, object, str], None] | None = None,
        observer: WatchObserver | None = None,
        feedback: Any = None,
        source: MailSource | None = None,  # None: EWS through ``connector`` (foldertrack.sources)
    ):
        self.options = options
        self.engine = engine
        self.connector = connector
        self.sink = sink
        # the local tables are always written by sync; any other sink is fed from the outbox
        local = sink if sink.shares_state_database else SqlActivitySink(engine)
        self.delivery: DeliveryService | None = None
        if not sink.shares_state_database:
            self.delivery = DeliveryService(
                sink,
                engine,
                options.delivery,
                feedback=feedback,
                observer=_ObserverProxy(self),
                instance=options.instance,
            )
        self.directory = RecordDirectory(engine)
        self.observer = observer or WatchObserver()
        self._lock = threading.RLock()
        self._placing = threading.Lock()
        self._mailboxes: dict[str, MailboxState] = {}
        self._groups: list[StreamGroup] = []
        self.resubscribes = ResubscribeLimiter()  # no failure may become a resubscribe storm
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._rules_watch = None
        self.ready = threading.Event()
        self.rules = None
        self.totals = SyncResult()
        self._next_replay_check = 0.0
        self.dispatcher = Dispatcher(self._handle, workers=options.workers, debounce=options.debounce)
        self._init_timer()  # before any mailbox state: states and backlog counts report changes to it
        self.sync_context = SyncContext(
            engine=engine,
            connector=connector,
            sink=local,
            resolve_address=self.directory.by_address,
            max_attachment_bytes=options.max_attachment_bytes,
            max_attempts=options.max_attempts,
            on_tracked=on_tracked,
            on_page=self.dispatcher.note_progress,
            outbox=OutboxWriter(sink.name if self.delivery is not None else None),
            source=source,
        )
        self._retiring: set[str] = set()  # mailboxes no rule names any more, held until retired
        self.fleet = self._make_fleet()  # mailbox leases: only the mailboxes held here are watched
        self.rules_state = RulesState(
            engine, self.fleet.id if self.fleet else options.instance, options.instance
        )

    def start(self) -> None:
        """Load rules (a broken set raises RuleError: nothing to keep yet), then start all threads."""
        self.rules = load_rules(self.options.rules_dir)
        if self.fleet is not None:
            self.fleet.register()
        self.rules_state.loaded(self.rules)  # SQLite: a second watcher on the database stops here
        if self.delivery is not None:
            self.delivery.start()  # before sync: entries left by a previous process go out at once
        self.dispatcher.start()
        self._apply_rules(self.rules, reason="start")
        if self.fleet is not None:
            self.fleet.start()  # its first share is acquired (and queued) before this returns
            self._mark_ready_if_done()
        self._timer = threading.Thread(target=self._tick_loop, name="foldertrack-timer", daemon=True)
        self._timer.start()
        if self.options.watch_rules_dir:
            self._start_rules_observer()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking events, let running work finish, unsubscribe, close connections."""
        self._stop.set()
        if self._rules_watch is not None:
            self._rules_watch.stop()
            self._rules_watch.join(timeout)
        for group in self._groups:
            group.stop(timeout=2.0)
        self.dispatcher.stop(timeout)
        if self._timer is not None:
            self._timer.join(timeout)
        if self.delivery is not None:
            self.delivery.stop(timeout)  # after the request in flight; the rest stays in the outbox
        with self._lock:
            states = list(self._mailboxes.values())
        self._unsubscribe_all([s for s in states if s.subscription_id], deadline=time.monotonic() + timeout)
        for state in states:
            state.mode, state.failing = "stopped", False
        self._flush_health(self.changes.drain())  # the last event times and errors, and "stopped"
        self.rules_state.clear()
        if self.fleet is not None:
            self.fleet.stop()  # hand every lease back at once: other instances take over in seconds
        if getattr(self, "push", None) is not None:
            self.push.stop()  # Graph change notifications: delete the subscriptions, stop the listener
        if self.connector is not None:
            self.connector.close()
        if self.sync_context.source is not None:
            self.sync_context.source.close()

    def check(self) -> str | None:
        """None when healthy, else why not (a dead thread: the supervisor exits so systemd restarts us)."""
        if self._stop.is_set():
            return None  # stopping: threads end on purpose
        if not self.dispatcher.alive():
            return "a sync worker thread died"
        if self._fleet_problem():
            return self._fleet_problem()
        if self.delivery is not None and self.delivery.check():
            return self.delivery.check()
        if self._timer is not None and not self._timer.is_alive() and not self._stop.is_set():
            return "the timer thread died"
        for group in self._groups:
            if group.size() and not group.alive():
                return f"stream reader {group.index} died"
        return None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or running, and the outbox of an external sink is empty (for tests
        and the demo)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.ready.wait(min(0.05, left)):
                continue
            if self.dispatcher.wait_idle(min(0.25, left)) and self._delivered():
                return True
            time.sleep(0.005)  # delivery still busy: look again
        return False

    def _delivered(self) -> bool:
        return self.delivery is None or self.delivery.figures().backlog == 0

    def reload_rules(self) -> bool:
        """Load the rules again; a valid set replaces the old one at once, an invalid one is logged and ignored."""
        try:
            rules = load_rules(self.options.rules_dir)
        except RuleError as exc:
            for problem in exc.problems:
                log.error("rules not reloaded: %s", problem)
            log.error("keeping the previous rules (%d problem(s))", len(exc.problems))
            self.rules_state.failed(exc)
            self.observer.rules_reloaded(False)
            return False
        self.rules_state.loaded(rules)
        self.observer.rules_reloaded(True)
        if self.rules is not None and rules.fingerprint == self.rules.fingerprint:
            log.info("rules reloaded: no change")
            return True
        self.rules = rules
        self._apply_rules(rules, reason="rules-reloaded")
        log.info("rules reloaded: %d rule(s) for %d mailbox(es)", len(rules.rules), len(rules.mailboxes()))
        return True

    def records_changed(self) -> None:
        """The record directory changed (records sync or import): re-resolve lookup and pattern rules now,
        so a rule waiting for its record does not wait for the next mail or safety net."""
        if self.rules is not None:
            self._apply_rules(self.rules, reason="records-synced")

    def _apply_rules(self, rules, reason: str) -> None:
        wanted = {m.lower() for m in rules.mailboxes()}
        owned = self.fleet.owned() if self.fleet is not None else None  # fleet: only what is held here
        mine = wanted if owned is None else wanted & set(owned)
        with self._lock:
            for mailbox in mine:
                state = self._state_for(mailbox)
                state.rules = self._rules_for(rules, mailbox)  # an index, not a walk over every rule
            gone = [m for m in self._mailboxes if m not in wanted]
            for mailbox in gone:
                self._mailboxes[mailbox].rules = ()  # so its resolve retires it
            if self.fleet is not None:
                self._retiring.update(gone)
        self._fleet_wanted(wanted)
        for mailbox in sorted(mine):
            self.dispatcher.put(HierarchyChanged(mailbox, reason), delay=0.0)
        for mailbox in gone:
            self.dispatcher.put(HierarchyChanged(mailbox, "mailbox-removed"), delay=0.0)
        if not wanted:
            self.ready.set()

    def _start_rules_observer(self) -> None:
        from foldertrack.watch.rules_watch import watch_rules_dir

        self._rules_watch = watch_rules_dir(self.options.rules_dir, self.reload_rules)

    def _handle(self, key: WorkKey, reasons: list[str], first_trigger: float) -> None:
        kind, mailbox = key[0], key[1]
        if self._stop.is_set():
            return
        try:
            if kind == "sync":
                self._sync(mailbox, key[2], first_trigger)
            elif kind == "hierarchy":
                self._resolve(mailbox, reasons)
            elif kind == "subscribe":
                self._subscribe(mailbox)
        except Reschedule:
            raise
        except LeaseLostError as exc:  # another instance holds the mailbox now: its work is not ours
            log.info("%s: %s dropped: %s", mailbox, kind, exc)
            return
        except ErrorServerBusy as exc:
            cause = classify(exc)  # exchangelib says ErrorServerBusy for HTTP 503 and closed connections too
            back_off = server_back_off(exc) if cause.throttling else None
            if back_off is None:  # no BackOffMilliseconds (HTTP 503, closed connection): our own back-off
                back_off = self.dispatcher.note_failure(key)
            self.observer.error(mailbox, kind, cause.code)
            self._note_error(mailbox, kind, cause.text, permanent=False)
            log.warning(
                "%s: %s %s (%s), backing off this mailbox %.1fs",
                mailbox,
                kind,
                "throttled by Exchange" if cause.throttling else "failed",
                cause.text,
                back_off,
            )
            raise Reschedule(back_off, block_mailbox=back_off) from exc
        except GraphThrottled as exc:  # Graph 429/503: that mailbox waits its Retry-After, others go on
            back_off = max(exc.retry_after or 0.0, 0.5)
            self.observer.error(mailbox, kind, classify(exc).code)
            self._note_error(mailbox, kind, describe(exc), permanent=False)
            log.warning("%s: %s throttled by Graph, backing off this mailbox %.1fs", mailbox, kind, back_off)
            raise Reschedule(back_off, block_mailbox=back_off) from exc
        except Exception as exc:
            delay = self.dispatcher.note_failure(key)
            self.observer.error(mailbox, kind, classify(exc).code)
            level = logging.WARNING if is_transient(exc) or isinstance(exc, ItemsNeedRetry) else logging.ERROR
            log.log(level, "%s: %s failed: %s; retrying in %.1fs", mailbox, kind, describe(exc), delay)
            permanent = not (
                is_transient(exc) or isinstance(exc, ItemsNeedRetry)
            )  # a poison item: the folder
            self._note_error(mailbox, kind, describe(exc), permanent=permanent)
            raise Reschedule(delay) from exc

    def _sync(self, mailbox: str, folder_id: str, first_trigger: float) -> None:
        with self._lock:
            state = self._mailboxes.get(mailbox)
            target = state.targets.get(folder_id) if state else None
        if target is None:
            return
        started = time.monotonic()
        backfill = self._backfilling(mailbox, folder_id)  # a first sync: not counted as move latency
        fence = self._sync_fence(mailbox)  # commits only under the lease epoch held now (fleet)
        try:
            result = catch_up(replace(self.sync_context, fence=fence) if fence else self.sync_context, target)
        except FolderGone:
            log.error(
                "%s: folder %r was deleted; its rule is broken (activities are kept)", mailbox, target.path
            )
            with store.writing(self.engine) as conn:
                self._fence(conn, mailbox)
                store.mark_folder_deleted(conn, mailbox, folder_id)
            self.dispatcher.put(HierarchyChanged(mailbox, "folder-gone"))
            return
        for outcome, key, subject in result.events:
            log.info(
                "%s %s: %s %s %s",
                mailbox,
                target.path,
                outcome,
                key,
                f"({subject})" if subject else "",
                extra={"mailbox": mailbox, "folder": target.path},
            )
        self._add_totals(result)
        state.failing = False
        finished = time.monotonic()
        if backfill:
            self.observer.backfilled(mailbox, target.path, finished - started, result)
        else:
            self.observer.sync_finished(
                mailbox, target.path, finished - started, result, finished - first_trigger
            )

    def _add_totals(self, result: SyncResult) -> None:
        with self._lock:
            for name in (
                "pages",
                "tracked",
                "relinked",
                "untracked",
                "left",
                "skipped",
                "dead_lettered",
                "conflicts",
            ):
                setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))

    def _note_error(self, mailbox: str, kind: str, error: str, permanent: bool) -> None:
        """Remember a failure for status and health; one while starting up (folders or subscription) lets
        readiness go on without this mailbox, which keeps being retried."""
        with self._lock:
            state = self._mailboxes.get(mailbox)
        if state is None:
            return
        state.last_error = error
        state.failing = state.failing or permanent
        if not self.ready.is_set() and kind in ("hierarchy", "subscribe"):
            state.start_failed = True
            self._mark_ready_if_done()

    def mailbox_states(self) -> list[MailboxState]:
        with self._lock:
            return list(self._mailboxes.values())

    def stream_groups(self) -> list[StreamGroup]:
        """The streaming connections (metrics read ``size()`` and ``connected``)."""
        with self._lock:
            return list(self._groups)


class _ObserverProxy:
    """Delivery reports to whatever observer the watcher has now (metrics may attach one after start)."""

    def __init__(self, watcher: Watcher):
        self._watcher = watcher

    def delivered(self, sink: str, op: str, outcome: str, seconds: float) -> None:
        self._watcher.observer.delivered(sink, op, outcome, seconds)
