"""``LeaseKeeper``: holds this instance's fair share of the mailbox leases and tells the daemon about it.

One thread per instance. Every ``claim_interval`` it rebalances: with ``n`` live instances it keeps at most
``ceil(mailboxes / n)`` leases, claims free ones up to that and hands surplus back when an instance joins.
Every third of the TTL it heartbeats and renews its leases. The daemon reads :meth:`LeaseKeeper.owned` and
gets ``on_acquired(mailbox, epoch)`` / ``on_lost(mailbox)`` callbacks on the keeper thread; ``on_lost`` comes
before a lease is handed back, so the daemon stops that mailbox first.

A round is O(1) in the number of leases held unless something changed (DESIGN "Scale": periodic work is
O(due)): renewal is one UPDATE for all leases, the earliest local deadline is kept rather than searched for,
and held leases are checked against the rules' mailboxes only when those changed.

Its own belief never outlives the database's: a lease counts as owned here only until the monotonic time of
the last successful renewal *before it was sent* plus the TTL minus a safety margin, so a keeper that is
frozen, partitioned or slow stops answering "owned" before a successor can claim. Writes are fenced anyway
(:func:`foldertrack.fleet.fence.assert_fenced`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from foldertrack.errors import FoldertrackError
from foldertrack.fleet import instances, leases
from foldertrack.fleet.clock import db_now, is_sqlite
from foldertrack.fleet.instances import InstanceIdentity
from foldertrack.state.database import SQLITE_BEGIN_OPTION, mask_url

log = logging.getLogger(__name__)

#: part of the TTL by which a keeper's belief ends before the database's expiry (clock-rate skew, latency)
SAFETY_FRACTION = 0.1
#: stopped or dead instances stay visible in ``status`` this long, then are pruned
KEEP_DEAD_INSTANCES = timedelta(days=1)

Acquired = Callable[[str, int], None]
Lost = Callable[[str], None]


@dataclass(frozen=True)
class FleetOptions:
    """How an instance keeps its leases (``[watch]`` lease settings)."""

    ttl: float = 30.0  # lease and heartbeat lifetime; renewed every third of it
    claim_interval: float = 1.0  # how often free leases and joining instances are looked for


@dataclass
class _Held:
    epoch: int
    deadline: float  # time.monotonic() after which this keeper no longer claims the lease


class LeaseKeeper:
    """This instance's leases; thread-safe. ``start()`` registers (on SQLite: as the database's only
    watcher, else :class:`~foldertrack.errors.InstanceConflictError`), ``stop()`` hands everything back."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str | None = None,
        identity: InstanceIdentity | None = None,
        ttl: float = 30.0,
        claim_interval: float = 1.0,
        on_acquired: Acquired | None = None,
        on_lost: Lost | None = None,
        options: FleetOptions | None = None,
    ) -> None:
        if options is not None:
            ttl, claim_interval = options.ttl, options.claim_interval
        if ttl <= 0 or claim_interval <= 0:
            raise ValueError("ttl and claim_interval must be positive")
        self.engine = engine
        self.identity = identity or InstanceIdentity(name=name or "foldertrack")
        self.ttl = ttl
        self.renew_interval = ttl / 3
        self.claim_interval = min(claim_interval, self.renew_interval)
        self._margin = ttl * SAFETY_FRACTION
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}
        self._first_deadline = math.inf  # no held lease's deadline is earlier (may be earlier than the min)
        self._wanted: frozenset[str] = frozenset()
        self._checked_wanted: frozenset[str] | None = None  # the wanted set held leases were checked against
        self._rows_missing = False
        self._alive_until = 0.0  # monotonic end of this instance's own heartbeat
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered = False
        self.superseded = False  # SQLite: another watcher took the database over while this one was stalled
        self.errors = 0  # failed rounds (database unreachable, timeouts), for metrics

    # -- what the daemon asks -------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.identity.id

    def owned(self) -> dict[str, int]:
        """``{mailbox: epoch}`` of the leases held right now (by this keeper's conservative clock)."""
        now = time.monotonic()
        with self._lock:
            return {m: h.epoch for m, h in self._held.items() if h.deadline > now}

    def epoch(self, mailbox: str) -> int | None:
        """The epoch under which ``mailbox`` is held now, or None (O(1): the daemon asks at every sync)."""
        now = time.monotonic()
        with self._lock:
            held = self._held.get(mailbox)
            return held.epoch if held is not None and held.deadline > now else None

    def set_mailboxes(self, mailboxes: Iterable[str]) -> None:
        """The mailboxes the rules name (every instance loads the same rules); leases follow at once."""
        with self._lock:
            self._wanted = frozenset(mailboxes)
            self._rows_missing = True
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def register(self) -> None:
        """Register this instance (idempotent); on SQLite refuse with :class:`InstanceConflictError` when
        another live watcher uses the database. Call before starting anything else."""
        if self._registered:
            return
        with self._transaction() as conn:
            now = db_now(conn)
            if is_sqlite(conn):
                database = self.engine.url.database or mask_url(self.engine.url)
                instances.claim_database(conn, self.identity, now, self.ttl, database)
            else:
                self._reap(conn, now)
                instances.register(conn, self.identity, now, self.ttl)
        self._alive_until = time.monotonic() + self.ttl - self._margin
        self._registered = True

    def start(self) -> None:
        """Register, take a first share at once (its ``on_acquired`` calls run before this returns, so the
        daemon knows what it owns when it decides it is ready), then keep the leases on a thread."""
        self.register()
        try:
            self._rebalance()
        except (SQLAlchemyError, FoldertrackError) as exc:  # the thread tries again
            self.errors += 1
            log.warning("fleet: first lease round failed (retrying): %s", exc)
        self._thread = threading.Thread(target=self._run, name=f"fleet-keeper-{self.id[:8]}", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop the thread; with ``release`` (a clean stop, SIGTERM) hand every lease back at once so other
        instances take the mailboxes over in a claim interval, not a TTL. Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            held = list(self._held)
        self._lose(held)
        if not release or not self._registered:
            return
        try:
            with self._transaction() as conn:
                now = db_now(conn)
                freed = leases.release_all(conn, self.id, now)
                instances.mark_stopped(conn, self.id, now, "stopped")
            log.info("fleet: %s stopped, %d lease(s) released", self.identity.describe(), freed)
        except SQLAlchemyError as exc:
            log.warning("fleet: could not release leases at stop (they expire by their TTL): %s", exc)

    # -- the thread -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_renew = time.monotonic() + self.renew_interval
        while not self._stopping.is_set():
            try:
                self._expire_local()
                if time.monotonic() >= next_renew:
                    started = time.monotonic()
                    self._renew()
                    next_renew = started + self.renew_interval
                self._rebalance()
            except _Superseded:
                self.superseded = True
                log.error("fleet: %s was taken over by another watcher; giving up", self.identity.describe())
                with self._lock:
                    held = list(self._held)
                self._lose(held)
                return
            except (SQLAlchemyError, FoldertrackError) as exc:
                self.errors += 1
                log.warning("fleet: lease round failed (retrying): %s", exc)
            except Exception:  # one bad round must not kill the keeper
                self.errors += 1
                log.exception("fleet: lease round failed unexpectedly")
            self._wake.wait(self._pause(next_renew))
            self._wake.clear()

    def _pause(self, next_renew: float) -> float:
        now = time.monotonic()
        return max(0.0, min(self.claim_interval, next_renew - now, self._first_deadline - now))

    def _expire_local(self) -> None:
        now = time.monotonic()
        if now < self._first_deadline:
            return  # the usual round: no lease is near its deadline (no walk over them)
        with self._lock:
            gone = [m for m, h in self._held.items() if h.deadline <= now]
            self._first_deadline = min(
                (h.deadline for h in self._held.values() if h.deadline > now), default=math.inf
            )
        if gone:
            log.warning("fleet: %d lease(s) not renewed in time, dropped: %s", len(gone), _few(gone))
            self._lose(gone)

    def _renew(self) -> None:
        started = time.monotonic()
        with self._transaction() as conn:
            now = db_now(conn)
            if not instances.heartbeat(conn, self.identity, now, self.ttl):
                raise _Superseded
            self._reap(conn, now)
            renewed = leases.renew(conn, self.id, now, self.ttl)
            with self._lock:
                stray = [m for m, e in renewed.items() if m not in self._held or self._held[m].epoch != e]
            if stray:  # held in the database but given up here (dropped late): hand them back
                leases.release(conn, self.id, stray, now)
        deadline = started + self.ttl - self._margin
        self._alive_until = deadline
        with self._lock:
            lost = [m for m, h in self._held.items() if renewed.get(m) != h.epoch]
            for m in self._held:
                if m not in lost:
                    self._held[m].deadline = deadline
            self._first_deadline = min((h.deadline for h in self._held.values()), default=math.inf)
        if lost:
            log.warning("fleet: %d lease(s) lost at renewal: %s", len(lost), _few(lost))
            self._lose(lost)

    def _reap(self, conn: Connection, now: datetime) -> None:
        reaped = instances.reap_dead_on_this_host(conn, self.identity, now)
        if reaped:
            log.warning("fleet: instance(s) %s died on this host: their leases are free", ", ".join(reaped))

    def _rebalance(self) -> None:
        started = time.monotonic()
        with self._lock:
            wanted, rows_missing = self._wanted, self._rows_missing
        with self._transaction(write=rows_missing) as conn:  # usually a read: no SQLite write lock
            if rows_missing:
                leases.ensure_rows(conn, wanted)
            now = db_now(conn)
            live = max(1, instances.live_count(conn, now))
            if self._stopping.is_set():
                return
            if rows_missing:
                instances.prune(conn, now, KEEP_DEAD_INSTANCES)
        if rows_missing:
            with self._lock:
                self._rows_missing = self._wanted is not wanted
        share = math.ceil(len(wanted) / live)
        with self._lock:  # held leases are all wanted unless the rules' mailboxes changed since the last look
            unwanted = (
                sorted(m for m in self._held if m not in wanted) if wanted is not self._checked_wanted else []
            )
            self._checked_wanted = wanted
            kept = len(self._held) - len(unwanted)
            surplus = sorted(m for m in self._held if m in wanted)[share:] if kept > share else []
        if unwanted or surplus:
            self._hand_back(unwanted + surplus)
        need = share - kept + len(surplus)
        if need > 0 and time.monotonic() < self._alive_until:
            self._claim(wanted, need, started)

    def _hand_back(self, names: list[str]) -> None:
        self._lose(names)  # the daemon stops those mailboxes before anyone else may claim them
        with self._transaction() as conn:
            leases.release(conn, self.id, names, db_now(conn))
        log.info("fleet: handed back %d lease(s): %s", len(names), _few(names))

    def _claim(self, wanted: frozenset[str], need: int, started: float) -> None:
        with self._transaction() as conn:
            got = leases.claim(conn, self.id, wanted, need, db_now(conn), self.ttl)
        if not got:
            return
        deadline = started + self.ttl - self._margin
        with self._lock:
            for mailbox, epoch in got.items():
                self._held[mailbox] = _Held(epoch, deadline)
            self._first_deadline = min(self._first_deadline, deadline)
        log.info("fleet: claimed %d lease(s): %s", len(got), _few(got))
        for mailbox, epoch in sorted(got.items()):
            self._call(self._on_acquired, mailbox, epoch)

    def _lose(self, names: list[str]) -> None:
        with self._lock:
            gone = [m for m in names if self._held.pop(m, None) is not None]
        for mailbox in sorted(gone):
            self._call(self._on_lost, mailbox)

    def _call(self, callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # the daemon's bug must not stop lease keeping
            log.exception("fleet: %s%r failed", getattr(callback, "__name__", "callback"), args)

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """A short transaction; SQLite takes its write lock at BEGIN for a ``write``, PostgreSQL bounds every
        statement so a hung database fails the round (and local deadlines drop the leases) instead of
        freezing the keeper."""
        with self.engine.connect() as conn:
            if is_sqlite(conn) and write:
                conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "immediate"})
            with conn.begin():
                if not is_sqlite(conn):
                    timeout_ms = max(100, int(self.renew_interval * 500))
                    conn.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
                yield conn


class _Superseded(Exception):
    """This instance's row was marked stopped by another watcher (SQLite takeover)."""


def _few(names: Iterable[str], limit: int = 5) -> str:
    items = sorted(names)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
