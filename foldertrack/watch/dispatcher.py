"""One dispatcher feeds the sync workers (STYLE §2).

Producers only ``put()`` events. Work is keyed (``("sync", mailbox, folder_id)``, ``("hierarchy", mailbox)``,
``("subscribe", mailbox)``). The first event for a folder starts its catch-up at once (no fixed wait: that
was most of the move → activity latency); events that arrive while it runs mark it to run exactly once more
afterwards, ``debounce`` later, so a burst of notifications collapses into one more catch-up. At most one
piece of work per mailbox runs at a time. A mailbox the server throttled waits out its back-off without
holding up the others. A handler that raises never stops a worker (STYLE §3).

Two queues: work triggered by something (a notification, a stream loss, a retry) runs before routine
background work (the poll timer, the safety net) and before a mailbox's takeover: a ``lease-acquired``
event marks its mailbox as being taken over, and until that mailbox's queue drains, all of its work except
what a notification asked for waits in the background queue, so moves in mailboxes already watched are not
held up behind thousands of resolves, subscriptions and catch-ups. Within each queue, due subscriptions go
before other due work: streaming has no watermark, so every subscription is followed by a catch-up of its
mailbox anyway (one queued before it would run twice), and a subscribed mailbox misses nothing while the
catch-ups go on; at start-up or takeover, every mailbox is live after its resolve and subscription instead of
after every catch-up queued before it. When the mailbox taken over was watched before (``lease-resumed``: a
dead or stopped instance's, its cursors committed), the catch-up its subscription queues goes next, before
the other mailboxes' resolves: the mails moved while nobody watched it are found by that catch-up alone, and it
reads only what changed, so they reach the CRM one mailbox after another from the start of the takeover, not
after every mailbox is subscribed (at 2,500 mailboxes, minutes). A first claim (``lease-acquired``: a new
fleet) keeps subscriptions first: its first catch-ups are backfills. Other work runs in the order it came due.

Everything a periodic caller asks is O(1) or O(changed): the backlog is a running count per mailbox, and
``on_backlog`` tells the owner which mailbox's count changed (the timer writes only those health rows).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from foldertrack.retry import Backoff, describe
from foldertrack.watch.events import FolderChanged, HierarchyChanged, SubscribeMailbox

log = logging.getLogger(__name__)

WorkKey = tuple[str, ...]
#: Reasons of routine work (the polling timer, the safety net, a takeover, the catch-up of every mailbox on a
#: stream we re-issued to add or drop a subscription): it runs only when no work triggered by an event, a
#: stream loss or a retry is due, so a mail moved meanwhile is not queued behind it. (A takeover adds hundreds
#: of subscriptions to streams: as triggered work, their re-issue catch-ups, five per mailbox already on the
#: stream at every re-issue, starved the takeover's own subscriptions.)
BACKGROUND_REASONS = frozenset({"poll", "safety-net", "lease-acquired", "lease-resumed", "stream-reissued"})
#: The reasons that start a mailbox's takeover (fleet): its follow-up work is background work too. Resumed: the
#: mailbox was watched before (its lease's epoch > 1), so its catch-ups read only what changed meanwhile.
TAKEOVER_REASON, RESUME_REASON = "lease-acquired", "lease-resumed"
TAKEOVER_REASONS = frozenset({TAKEOVER_REASON, RESUME_REASON})
#: The catch-up a new subscription queues (watch/subscribing.py): in a resumed takeover it goes first.
FOLLOW_UP_REASON = "resubscribed"
#: Within each queue: subscriptions, then a resumed takeover's follow-up catch-ups, then the rest.
SUBSCRIPTION_TIER, FOLLOW_UP_TIER, OTHER_TIER = 0, 1, 2
#: Reasons of work a notification asked for: never background, not even during a takeover.
LIVE_REASONS = frozenset({"event", "folder-event", "folder-modified", "notification"})  # notification: Graph
Event = FolderChanged | HierarchyChanged | SubscribeMailbox


class Reschedule(Exception):
    """Raised by a handler: run this work again after ``delay`` seconds; ``block_mailbox`` pauses all of the
    mailbox's work that long (server back-off)."""

    def __init__(self, delay: float, *, block_mailbox: float | None = None, reason: str = ""):
        super().__init__(reason or f"retry in {delay:.1f}s")
        self.delay = delay
        self.block_mailbox = block_mailbox


@dataclass(frozen=True)
class RunningWork:
    """A piece of work being done: which, by which thread, since when, and its last sign of progress."""

    key: WorkKey
    thread_id: int
    started: float
    last_progress: float


@dataclass
class DispatcherStats:
    events: int = 0
    runs: int = 0
    failures: int = 0


def work_key(event: Event) -> WorkKey:
    if isinstance(event, FolderChanged):
        return ("sync", event.mailbox, event.folder_id)
    if isinstance(event, HierarchyChanged):
        return ("hierarchy", event.mailbox)
    return ("subscribe", event.mailbox)


class Dispatcher:
    """Debounced, per-mailbox serialised work queue with a fixed pool of worker threads."""

    def __init__(
        self,
        handler: Callable[[WorkKey, list[str], float], None],
        *,
        workers: int = 4,
        debounce: float = 0.05,
        hierarchy_debounce: float = 0.5,
        backoff: Backoff | None = None,
        name: str = "foldertrack",
        on_backlog: Callable[[str], None] | None = None,
    ):
        """``on_backlog(mailbox)`` is called (under the lock: it must not block) whenever the mailbox's
        count of queued or running work changes (settable later, before ``start()``)."""
        self._handler = handler
        self._workers = workers
        self._debounce = debounce
        self._hierarchy_debounce = hierarchy_debounce
        self._backoff = backoff or Backoff()
        self._name = name
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._idle_cond = threading.Condition(lock)  # told when nothing is queued or running (wait_idle)
        # two queues, work triggered by something (first) and background work, each in tiers (subscriptions
        # first): (background?, tier) → heap of (due, seq, key), taken in this order
        self._heaps: dict[tuple[bool, int], list[tuple[float, int, WorkKey]]] = {
            (b, t): [] for b in (False, True) for t in (SUBSCRIPTION_TIER, FOLLOW_UP_TIER, OTHER_TIER)
        }
        self._queued_in: dict[WorkKey, tuple[bool, int]] = {}  # key → the heap its live entry is in
        self._due: dict[WorkKey, float] = {}
        self._reasons: dict[WorkKey, list[str]] = defaultdict(list)
        self._first_trigger: dict[WorkKey, float] = {}  # monotonic time of the oldest unserved trigger
        self._running: set[WorkKey] = set()
        # queued or running pieces of work per mailbox (keys of ``_due`` and ``_running``: never both)
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        self.on_backlog = on_backlog
        # mailboxes being taken over (their work is background work) → resumed (watched before)?
        self._takeovers: dict[str, bool] = {}
        self._running_info: dict[int, RunningWork] = {}  # thread id → its work (stuck-work detection)
        self._succeeded: dict[str, float] = {}  # mailbox → when a piece of its work last succeeded
        self._busy_mailboxes: set[str] = set()
        self._dirty: set[WorkKey] = set()
        self._blocked: dict[str, float] = {}
        self._attempts: dict[WorkKey, int] = defaultdict(int)
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.stats = DispatcherStats()
        self.last_progress = time.monotonic()

    # -- producers ---------------------------------------------------------------------------------------

    def put(self, event: Event, delay: float | None = None) -> None:
        """Schedule the work an event calls for (thread-safe, never blocks on I/O)."""
        key = work_key(event)
        if delay is None:
            # a catch-up starts on its first event; the debounce only spaces the re-run of busy work
            delay = self._hierarchy_debounce if key[0] == "hierarchy" else 0.0
        with self._cond:
            self.stats.events += 1
            if event.reason in TAKEOVER_REASONS:
                self._takeovers[key[1]] = self._takeovers.get(key[1], False) or event.reason == RESUME_REASON
            self._reasons[key].append(event.reason)
            self._first_trigger.setdefault(key, time.monotonic())
            if key in self._running:
                self._dirty.add(key)
                return
            self._schedule(key, time.monotonic() + delay)

    def _is_background(self, key: WorkKey) -> bool:
        reasons = self._reasons.get(key)
        takeover = key[1] in self._takeovers
        if not reasons:  # a retry (its reasons went with the first run)
            return takeover
        if takeover:
            return not any(r in LIVE_REASONS for r in reasons)
        return all(r in BACKGROUND_REASONS for r in reasons)

    def _queue_of(self, key: WorkKey) -> tuple[bool, int]:
        """The heap ``key`` belongs in now: (background?, tier)."""
        background = self._is_background(key)
        if key[0] == "subscribe":
            return background, SUBSCRIPTION_TIER
        if background and self._takeovers.get(key[1]) and FOLLOW_UP_REASON in self._reasons.get(key, ()):
            return background, FOLLOW_UP_TIER
        return background, OTHER_TIER

    def _count(self, mailbox: str, delta: int) -> None:
        """Keep the running backlog count of ``mailbox`` (caller holds the lock); a takeover ends when the
        mailbox's queue drains."""
        count = self._pending.get(mailbox, 0) + delta
        if count:
            self._pending[mailbox] = count
        else:
            self._pending.pop(mailbox, None)
            self._takeovers.pop(mailbox, None)
        self._pending_total += delta
        if self.on_backlog is not None:
            self.on_backlog(mailbox)

    def _schedule(self, key: WorkKey, due: float) -> None:
        queue = self._queue_of(key)
        current = self._due.get(key)
        if current is not None:
            if self._queued_in.get(key) == queue and current <= due:
                return
            # it moves heap (promoted to triggered work, or to a follow-up) or comes due sooner
            due = min(due, current)
        else:
            self._count(key[1], 1)
        self._due[key] = due
        self._queued_in[key] = queue
        heapq.heappush(self._heaps[queue], (due, next(self._seq), key))
        self._cond.notify()

    def idle(self) -> bool:
        """True when nothing is queued or running (tests and the demo wait on this)."""
        with self._cond:
            return not self._due and not self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; woken as the last piece of work ends, so the short idle
        moments between a busy poller's rounds are not missed by looking now and then."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle_cond.wait(left)
            return True

    def start(self) -> None:
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"{self._name}-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; running work finishes (each page is one transaction, so abandoning is safe too)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads) and bool(self._threads)

    def _next(self) -> tuple[WorkKey, list[str], float] | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                chosen: WorkKey | None = None
                wake = now + 1.0
                for queue in self._heaps:  # triggered work first, then by tier
                    chosen, wake = self._take_due(queue, now, wake)
                    if chosen is not None:
                        break
                if chosen is not None:
                    del self._due[chosen]
                    del self._queued_in[chosen]
                    self._running.add(chosen)
                    self._busy_mailboxes.add(chosen[1])
                    reasons = self._reasons.pop(chosen, [])
                    first = self._first_trigger.pop(chosen, now)
                    return chosen, reasons, first
                self._cond.wait(max(0.005, wake - now))
            return None

    def _take_due(self, queue: tuple[bool, int], now: float, wake: float) -> tuple[WorkKey | None, float]:
        """The first due key of one queue whose mailbox is free (caller holds the lock), and when to wake."""
        heap = self._heaps[queue]
        deferred: list[tuple[float, int, WorkKey]] = []
        waiting: list[tuple[float, int, WorkKey]] = []
        chosen: WorkKey | None = None
        while heap:
            due, seq, key = heap[0]
            if self._due.get(key) != due or self._queued_in.get(key) != queue:
                heapq.heappop(heap)  # superseded entry
                continue
            if due > now:
                wake = min(wake, due)
                break
            heapq.heappop(heap)
            mailbox = key[1]
            blocked = self._blocked.get(mailbox, 0.0)
            if blocked > now:
                deferred.append((max(blocked, due), seq, key))
                continue
            if mailbox in self._busy_mailboxes:
                # keeps its place (work of a mailbox runs in the order it came due: a folder's catch-up
                # queued behind a running one is not overtaken by a later event); the end of the running
                # work wakes the workers
                waiting.append((due, seq, key))
                continue
            chosen = key
            break
        for due, seq, key in deferred:
            self._due[key] = due
            heapq.heappush(heap, (due, seq, key))
            wake = min(wake, due)
        for entry in waiting:
            heapq.heappush(heap, entry)
        return chosen, wake

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            key, reasons, first_trigger = job
            retry: float | None = None
            ident = threading.get_ident()
            started = time.monotonic()
            with self._cond:
                self._running_info[ident] = RunningWork(key, ident, started, started)
            try:
                self._handler(key, reasons, first_trigger)
                self._attempts.pop(key, None)
                self._succeeded[key[1]] = time.monotonic()
            except Reschedule as exc:
                retry = exc.delay
                if exc.block_mailbox:
                    with self._cond:
                        self._blocked[key[1]] = time.monotonic() + exc.block_mailbox
            except Exception as exc:  # survive any bad event: log, count, retry with back-off
                self._attempts[key] += 1
                retry = self._backoff.delay(self._attempts[key])
                self.stats.failures += 1
                log.exception(
                    "%s %s: unexpected failure (%s); retrying in %.1fs", key[0], key[1], describe(exc), retry
                )
            finally:
                with self._cond:
                    self._running_info.pop(ident, None)
                    self.stats.runs += 1
                    self.last_progress = time.monotonic()
                    self._running.discard(key)
                    self._busy_mailboxes.discard(key[1])
                    if retry is not None:
                        # a retry still serves the original trigger: keep its time for the latency figure
                        if self._first_trigger.get(key, first_trigger) >= first_trigger:
                            self._first_trigger[key] = first_trigger
                        self._schedule(key, time.monotonic() + retry)
                    elif key in self._dirty:
                        self._schedule(key, time.monotonic() + self._debounce)
                    self._dirty.discard(key)
                    self._count(key[1], -1)  # after any re-run is queued: a takeover ends only when drained
                    self._cond.notify_all()
                    if not self._due and not self._running:
                        self._idle_cond.notify_all()

    def backlog(self) -> dict[str, int]:
        """Queued or running pieces of work per mailbox, of the mailboxes that have some (O(those))."""
        with self._cond:
            return dict(self._pending)

    def backlog_of(self, mailbox: str) -> int:
        """Queued or running pieces of work of one mailbox (O(1))."""
        return self._pending.get(mailbox, 0)

    def backlog_total(self) -> int:
        """Queued or running pieces of work in all (O(1): the supervisor asks twice a second)."""
        return self._pending_total

    def note_progress(self) -> None:
        """Long work (a big backfill, page after page) says it is moving, so it is not taken for stuck."""
        now = time.monotonic()
        self.last_progress = now
        ident = threading.get_ident()
        with self._cond:
            work = self._running_info.get(ident)
            if work is not None:
                self._running_info[ident] = RunningWork(work.key, ident, work.started, now)

    def succeeded_since(self, mailbox: str, since: float) -> bool:
        """Whether some work of ``mailbox`` succeeded after monotonic time ``since``."""
        return self._succeeded.get(mailbox, 0.0) > since

    def stuck(self, older_than: float, now: float | None = None) -> list[RunningWork]:
        """Work that has shown no progress for ``older_than`` seconds (one mailbox's sync hanging on a server
        that never finishes its answer, say), oldest first."""
        now = time.monotonic() if now is None else now
        with self._cond:
            running = list(self._running_info.values())
        return sorted(
            (w for w in running if now - w.last_progress > older_than), key=lambda w: w.last_progress
        )

    def attempts(self, key: WorkKey) -> int:
        return self._attempts.get(key, 0)

    def note_failure(self, key: WorkKey) -> float:
        """Count a failed attempt of ``key`` and return the back-off before the next one."""
        self._attempts[key] += 1
        return self._backoff.delay(self._attempts[key])
