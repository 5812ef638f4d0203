"""The watcher daemon: rules → tracked folders → subscriptions → catch-up syncs → activities.

Threads: one per streaming connection (only enqueue), the dispatcher's workers (all EWS and database
work), one timer (polling fallback, safety-net syncs, stalled-stream detection) and watchdog's observer
for the rules directory. ``Watcher.check()`` tells a supervisor whether every thread is alive.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from exchangelib.errors import ErrorServerBusy
from exchangelib.properties import FolderId
from exchangelib.services import SubscribeToStreaming, Unsubscribe
from sqlalchemy import Engine

from foldertrack.errors import RuleError
from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.exchange.hierarchy import load_tree
from foldertrack.retry import describe, is_transient, server_back_off
from foldertrack.rules.loader import load_rules
from foldertrack.sinks.base import ActivitySink
from foldertrack.state import watch_store as store
from foldertrack.state.records import RecordDirectory
from foldertrack.state.types import utcnow
from foldertrack.sync import FolderGone, ItemsNeedRetry, SyncContext, SyncResult, catch_up
from foldertrack.targets import Target, anchors, resolve_targets
from foldertrack.watch.dispatcher import Dispatcher, Reschedule, WorkKey
from foldertrack.watch.events import FolderChanged, HierarchyChanged, SubscribeMailbox
from foldertrack.watch.mailbox import MailboxState
from foldertrack.watch.observer import WatchObserver
from foldertrack.watch.streaming import MAX_IDS_PER_STREAM, StreamGroup, Subscription

log = logging.getLogger("foldertrack.watch")

EVENT_TYPES = ("CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "NewMailEvent")
POLL_AFTER_FAILURES = 2  # subscription or stream failures in a row before a mailbox polls
#: hierarchy reasons that re-resolve even when the folder tree did not change (records may have changed)
FULL_RESOLVE_REASONS = frozenset({"start", "rules-reloaded", "safety-net", "folder-gone", "mailbox-removed"})
REPLAY_CHECK_INTERVAL = 2.0  # seconds between looks for dead letters `foldertrack retry` queued


@dataclass(frozen=True)
class WatchOptions:
    """Tunables of the daemon (from ``[watch]`` in the configuration)."""

    rules_dir: Path
    poll_interval: float = 60.0
    safety_sync_interval: float = 900.0
    workers: int = 4
    debounce: float = 0.05
    max_attempts: int = 5
    max_attachment_bytes: int = 5 * 1024 * 1024
    stream_timeout_minutes: int = 10
    stream_stall_timeout: float = 120.0
    streams_per_connection: int = MAX_IDS_PER_STREAM
    watch_rules_dir: bool = True
    instance: str | None = None


class Watcher:
    """Watches every mailbox named in the rules. ``start()``, then ``stop()``; ``reload_rules()`` any time."""

    def __init__(
        self,
        options: WatchOptions,
        engine: Engine,
        connector: ExchangeConnector,
        sink: ActivitySink,
        *,
        on_tracked: Callable[[Target, object, str], None] | None = None,
        observer: WatchObserver | None = None,
    ):
        self.options = options
        self.engine = engine
        self.connector = connector
        self.sink = sink
        self.directory = RecordDirectory(engine)
        self.observer = observer or WatchObserver()
        self._lock = threading.RLock()
        self._mailboxes: dict[str, MailboxState] = {}
        self._groups: list[StreamGroup] = []
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._rules_watch = None
        self.ready = threading.Event()
        self.rules = None
        self.totals = SyncResult()
        self._next_replay_check = 0.0
        self.dispatcher = Dispatcher(self._handle, workers=options.workers, debounce=options.debounce)
        self.sync_context = SyncContext(
            engine=engine,
            connector=connector,
            sink=sink,
            resolve_address=self.directory.by_address,
            max_attachment_bytes=options.max_attachment_bytes,
            max_attempts=options.max_attempts,
            on_tracked=on_tracked,
            on_page=self.dispatcher.note_progress,
        )

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load rules (a broken set raises RuleError: nothing to keep yet), then start all threads."""
        self.rules = load_rules(self.options.rules_dir)
        self.dispatcher.start()
        self._apply_rules(self.rules, reason="start")
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
        with self._lock:
            states = list(self._mailboxes.values())
        self._unsubscribe_all([s for s in states if s.subscription_id], deadline=time.monotonic() + timeout)
        for state in states:
            state.mode, state.failing = "stopped", False
        self._flush_health(states)  # the last event times and errors, and "stopped", even for a short run
        self.connector.close()

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

    def check(self) -> str | None:
        """None when healthy, else why not (a dead thread: the supervisor exits so systemd restarts us)."""
        if self._stop.is_set():
            return None  # stopping: threads end on purpose
        if not self.dispatcher.alive():
            return "a sync worker thread died"
        if self._timer is not None and not self._timer.is_alive() and not self._stop.is_set():
            return "the timer thread died"
        for group in self._groups:
            if group.size() and not group.alive():
                return f"stream reader {group.index} died"
        return None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or running (for tests and the demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.is_set() and self.dispatcher.idle():
                return True
            time.sleep(0.01)
        return False

    # -- rules -----------------------------------------------------------------------------------------------

    def reload_rules(self) -> bool:
        """Load the rules again; a valid set replaces the old one at once, an invalid one is logged and ignored."""
        try:
            rules = load_rules(self.options.rules_dir)
        except RuleError as exc:
            for problem in exc.problems:
                log.error("rules not reloaded: %s", problem)
            log.error("keeping the previous rules (%d problem(s))", len(exc.problems))
            return False
        if self.rules is not None and rules.fingerprint == self.rules.fingerprint:
            log.info("rules reloaded: no change")
            return True
        self.rules = rules
        self._apply_rules(rules, reason="rules-reloaded")
        log.info("rules reloaded: %d rule(s) for %d mailbox(es)", len(rules.rules), len(rules.mailboxes()))
        return True

    def _apply_rules(self, rules, reason: str) -> None:
        wanted = {m.lower() for m in rules.mailboxes()}
        with self._lock:
            for mailbox in wanted:
                state = self._mailboxes.setdefault(mailbox, MailboxState(mailbox))
                state.rules = tuple(rules.for_mailbox(mailbox))
            gone = [m for m in self._mailboxes if m not in wanted]
        for mailbox in sorted(wanted):
            self.dispatcher.put(HierarchyChanged(mailbox, reason), delay=0.0)
        for mailbox in gone:
            self.dispatcher.put(HierarchyChanged(mailbox, "mailbox-removed"), delay=0.0)
        if not wanted:
            self.ready.set()

    def _start_rules_observer(self) -> None:
        from foldertrack.watch.rules_watch import watch_rules_dir

        self._rules_watch = watch_rules_dir(self.options.rules_dir, self.reload_rules)

    # -- work ------------------------------------------------------------------------------------------------

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
        except ErrorServerBusy as exc:
            back_off = server_back_off(exc)
            if back_off is None:  # no BackOffMilliseconds (HTTP 503, closed connection): our own back-off
                back_off = self.dispatcher.note_failure(key)
            self.observer.error(mailbox, kind, "ErrorServerBusy")
            self._note_error(mailbox, kind, describe(exc), permanent=False)
            log.warning(
                "%s: %s throttled by Exchange (%s), backing off this mailbox %.1fs",
                mailbox,
                kind,
                describe(exc),
                back_off,
            )
            raise Reschedule(back_off, block_mailbox=back_off) from exc
        except Exception as exc:
            delay = self.dispatcher.note_failure(key)
            self.observer.error(mailbox, kind, type(exc).__name__)
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
        try:
            result = catch_up(self.sync_context, target)
        except FolderGone:
            log.error(
                "%s: folder %r was deleted; its rule is broken (activities are kept)", mailbox, target.path
            )
            with store.writing(self.engine) as conn:
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

    def _resolve(self, mailbox: str, reasons: list[str]) -> None:
        """Re-read the folder tree, resolve the mailbox's rules to folders, (re)subscribe if that changed."""
        with self._lock:
            state = self._mailboxes.get(mailbox)
        if state is None:
            return
        if not state.rules:
            with store.writing(self.engine) as conn:
                store.replace_rule_issues(conn, mailbox, [])
            self._retire_mailbox(state)
            return
        account = self.connector.account(mailbox)
        state.tree = load_tree(account, state.tree)
        resolved_for = (state.tree.revision, state.rules)
        if (
            state.resolved
            and state.resolved_for is not None
            and state.resolved_for[0] == resolved_for[0]
            and state.resolved_for[1] is state.rules
            and not FULL_RESOLVE_REASONS.intersection(reasons)
        ):
            return  # same folders, same rules (a folder's item count changed): nothing to re-resolve
        with self.engine.connect() as conn:
            pins = store.pins(conn, mailbox)
        finder = self._find_record
        targets, issues = resolve_targets(mailbox, state.rules, state.tree, finder, pins)
        deleted = {pins[i.path] for i in issues if i.kind == "folder_deleted" and i.path in pins}
        plans = [
            store.FolderPlan(
                mailbox,
                t.folder_id,
                t.configured_path,
                t.path,
                t.rule_source,
                None if t.via == "rule" else t.configured_path,
                "stale_path"
                if t.path.casefold() != t.configured_path.casefold() and t.via == "rule"
                else "active",
            )
            for t in targets
        ]
        with store.writing(self.engine) as conn:
            new = store.apply_plan(conn, mailbox, plans, deleted=deleted)
            store.replace_rule_issues(conn, mailbox, issues)  # what `status` shows as drift
        watch_ids = {t.folder_id for t in targets}
        for rule in state.rules:
            if rule.is_pattern:
                parent = state.tree.find(rule.segments)
                if parent:
                    watch_ids.add(parent)
        watch_ids |= anchors(state.rules, state.tree, issues)  # a missing or deleted folder reappearing
        known = set(state.issues)  # log a rule problem when it appears and when it goes, not on every resolve
        for issue in issues:
            if issue not in known:
                log.warning("%s: %s: %s", mailbox, issue.rule_source, issue.message)
        for issue in known - set(issues):
            log.info("%s: %s: resolved: %s", mailbox, issue.rule_source, issue.message)
        with self._lock:
            previous = set(state.targets)
            state.targets = {t.folder_id: t for t in targets}
            state.issues = issues
            state.watch_ids = frozenset(watch_ids)
            resubscribe = state.watch_ids != state.subscribed_ids or state.subscription_id is None
            first = not state.resolved
            state.resolved = True
            state.resolved_for = resolved_for
        for folder_id in state.targets:
            if folder_id in new or folder_id not in previous:
                self.dispatcher.put(
                    FolderChanged(mailbox, folder_id, "backfill" if folder_id in new else "resolved")
                )
        if resubscribe and state.watch_ids:
            self.dispatcher.put(SubscribeMailbox(mailbox, "folders-changed" if not first else "start"))
        elif first:
            self._mark_ready_if_done()
        if first:
            log.info(
                "%s: tracking %d folder(s)%s",
                mailbox,
                len(targets),
                f", {len(issues)} rule problem(s)" if issues else "",
            )

    def _find_record(self, record_type, text, by):
        return self.directory.find(record_type, text, by)

    def _retire_mailbox(self, state: MailboxState) -> None:
        self._drop_subscription(state)
        with store.writing(self.engine) as conn:
            store.apply_plan(conn, state.mailbox, [])
        with self._lock:
            self._mailboxes.pop(state.mailbox, None)
            # the timer may still hold this state from before the pop: whatever it writes says "stopped"
            state.mode, state.failing = "stopped", False
        store.set_health(self.engine, state.mailbox, mode="stopped", instance=self.options.instance)
        log.info("%s: no longer watched", state.mailbox)

    def _subscribe(self, mailbox: str) -> None:
        with self._lock:
            state = self._mailboxes.get(mailbox)
        if state is None or not state.watch_ids:
            return
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
        group = self._group_with_room()
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

    def _group_with_room(self) -> StreamGroup:
        with self._lock:
            for group in self._groups:
                if group.size() < self.options.streams_per_connection:
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
        with self._lock:
            # a mailbox whose start failed (no such mailbox, no impersonation right, a mailbox move that
            # lasts hours) must not hold the others back: status and health show its error, and it is
            # retried with back-off
            done = all(
                s.start_failed
                or (s.resolved and (s.subscription_id or s.mode == "polling" or not s.watch_ids))
                for s in self._mailboxes.values()
            )
        if done and not self.ready.is_set():
            self.ready.set()
            log.info("watching %d mailbox(es)", len(self._mailboxes))

    # -- stream callbacks (stream threads: only enqueue) -----------------------------------------------------

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

    # -- timer: polling fallback, safety net, stalled streams ------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._tick(time.monotonic())
            except Exception as exc:  # the timer must survive anything
                log.exception("timer: %s", describe(exc))

    def _tick(self, now: float) -> None:
        with self._lock:
            states = list(self._mailboxes.values())
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
                if (
                    state.subscription_id is None
                    and self.dispatcher.attempts(("subscribe", state.mailbox)) == 0
                ):
                    self.dispatcher.put(SubscribeMailbox(state.mailbox, "poll-retry"))
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

    # -- introspection ---------------------------------------------------------------------------------------

    def mailbox_states(self) -> list[MailboxState]:
        with self._lock:
            return list(self._mailboxes.values())

    def stream_groups(self) -> list[StreamGroup]:
        """The streaming connections (metrics read ``size()`` and ``connected``)."""
        with self._lock:
            return list(self._groups)
