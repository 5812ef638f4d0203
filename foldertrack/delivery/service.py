"""The delivery service: an external sink's workers, their wake-up, the sink-wide pause, and its health.

Sync never waits for the sink: it commits outbox entries and the commit wakes the workers, so a move
reaches the CRM milliseconds after the local activity. :func:`foldertrack.delivery.outbox.add` leaves a
flag on the connection; a pool ``checkin`` listener wakes the workers when the connection comes back
after its commit (the ``commit`` event fires before the data is visible), a ``rollback`` clears the flag.
Workers otherwise wait until their earliest retry falls due, or ``scan_interval`` for entries another
process queued (``foldertrack retry``).

A transient failure pauses the whole sink (its ``Retry-After``, or the back-off for consecutive
failures), so an outage or a 429 storm costs one probe per interval rather than one request per entry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, select

from foldertrack.delivery import outbox
from foldertrack.fleet.instances import pid_running
from foldertrack.retry import Backoff
from foldertrack.sinks.base import ActivitySink
from foldertrack.state import watch_store as store
from foldertrack.state.schema import sink_health
from foldertrack.state.types import utcnow

log = logging.getLogger("foldertrack.delivery")


@dataclass(frozen=True)
class DeliveryOptions:
    """``[delivery]`` settings (see ``foldertrack.config``)."""

    workers: int = 4
    unhealthy_after: float = 600.0
    max_backoff: float = 300.0
    retention: float = 7 * 86400.0
    scan_interval: float = 2.0
    initial_backoff: float = 0.5
    batch: int = 50
    prune_interval: float = 600.0
    claim_ttl: float = 60.0  # a process's claim on a batch, extended while it works through the batch
    #: attempts after which an entry that keeps raising something other than a sink error (a bug, an
    #: answer the sink cannot read) is dead-lettered instead of retried for ever
    max_unexpected_attempts: int = 10


class DeliveryService:
    """Feeds ``sink`` from the outbox with its own threads. ``start()``, ``wake()``, ``stop()``."""

    def __init__(
        self,
        sink: ActivitySink,
        engine: Engine,
        options: DeliveryOptions | None = None,
        *,
        feedback: Any = None,
        observer: Any = None,
        instance: str | None = None,
    ):
        self.sink = sink
        #: who claims entries: unique per process, so two processes never share a claim, not even two that
        #: share an instance name (two hosts, or containers, with one host name); a stopping process hands
        #: its claims back, a restart on the same host frees its killed predecessor's at once
        #: (``_release_dead_claims``), others run out after ``claim_ttl``
        self.owner = claim_owner(instance or socket.gethostname())
        self.engine = engine
        self.options = options or DeliveryOptions()
        self.feedback = feedback
        self.observer = observer
        count = max(1, min(self.options.workers, int(sink.max_concurrency or 1), outbox.PARTITIONS))
        self.partitions = [tuple(p for p in range(outbox.PARTITIONS) if p % count == i) for i in range(count)]
        self.entry_backoff = Backoff(initial=self.options.initial_backoff, maximum=self.options.max_backoff)
        self.sink_backoff = Backoff(initial=self.options.initial_backoff, maximum=self.options.max_backoff)
        self._cv = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._paused_until = 0.0  # monotonic
        self._consecutive = 0
        self._lock = threading.Lock()
        self.failing_since: datetime | None = None
        self.last_error: str | None = None
        self.workers: list[threading.Thread] = []
        self._listening = False

    @property
    def name(self) -> str:
        return self.sink.name

    def _release_dead_claims(self) -> None:
        """Claims left by a killed process of this instance on this host (its pid is gone): free at once,
        so a restart after ``kill -9`` does not wait ``claim_ttl`` for them."""
        prefix = self.owner.rsplit("/", 1)[0] + "/"  # instance@host/
        try:
            with self.engine.connect() as conn:
                owners = outbox.claim_owners(conn, prefix, self.name)
            dead = [o for o in owners if o != self.owner and _gone(o[len(prefix) :].split("-")[0])]
            if dead:
                with store.writing(self.engine) as conn:
                    for owner in dead:
                        outbox.release_claims(conn, owner, self.name)
        except Exception as exc:  # the database may be down: the claims run out after claim_ttl
            log.warning("delivery to %s: could not free a dead process's claims: %s", self.name, exc)

    def _release_claims(self) -> None:
        try:
            with store.writing(self.engine) as conn:
                released = outbox.release_claims(conn, self.owner, self.name)
            if released:
                log.info("delivery to %s: %d claimed entr(ies) handed back", self.name, released)
        except Exception as exc:  # the database may be down: the claims run out after claim_ttl
            log.warning("delivery to %s: could not hand claims back: %s", self.name, exc)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        from foldertrack.delivery.worker import DeliveryWorker

        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(sink_health).where(sink_health.c.sink == self.name)).first()
            if row is not None:  # an outage that began before a restart is still one outage
                self.failing_since, self.last_error = row.failing_since, row.last_error
        except Exception as exc:  # the database may be down: workers retry; health starts clean
            log.warning("delivery to %s: could not read its health: %s", self.name, exc)
        self._release_dead_claims()
        event.listen(self.engine, "checkin", self._on_checkin)
        event.listen(self.engine, "rollback", self._on_rollback)
        self._listening = True
        self.workers = [DeliveryWorker(self, i, parts) for i, parts in enumerate(self.partitions)]
        for worker in self.workers:
            worker.start()
        log.info("delivery to %s: %d worker(s)", self.name, len(self.workers))

    def stop(self, timeout: float = 10.0) -> None:
        """Drain: each worker finishes (and records) the request in flight, then exits."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._release_claims()
        if self._listening:
            event.remove(self.engine, "checkin", self._on_checkin)
            event.remove(self.engine, "rollback", self._on_rollback)
            self._listening = False
        for closable in (self.sink, self.feedback):
            close = getattr(closable, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    log.warning("delivery to %s: close failed: %s", self.name, exc)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def check(self) -> str | None:
        """None while every worker lives (or we are stopping), else which died."""
        if self.stopping:
            return None
        dead = [w.name for w in self.workers if not w.is_alive()]
        return f"delivery worker {dead[0]} died" if dead else None

    # -- waking ----------------------------------------------------------------------------------------------

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(outbox.PENDING_FLAG, False):
            self.wake()

    @staticmethod
    def _on_rollback(conn: Any) -> None:
        conn.info.pop(outbox.PENDING_FLAG, None)

    def wake(self) -> None:
        """New entries were committed (or we stop): every worker looks at once."""
        with self._cv:
            self._generation += 1
            self._cv.notify_all()

    @property
    def generation(self) -> int:
        return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        """Wait until woken after generation ``seen``, stopping, or ``timeout`` seconds."""
        with self._cv:
            if self._generation == seen and not self.stopping:
                self._cv.wait(timeout)

    # -- the sink-wide pause and health ----------------------------------------------------------------------

    def paused_for(self) -> float:
        """Seconds until the sink may be called again (0: now)."""
        return max(0.0, self._paused_until - time.monotonic())

    def note_success(self) -> None:
        with self._lock:
            if self.failing_since is not None:
                log.info("delivery to %s: working again", self.name)
            self._consecutive = 0
            self.failing_since = None

    def note_transient(self, error: str, retry_after: float | None) -> datetime:
        """A transient failure: pause the sink; returns ``failing_since`` (for the health row)."""
        with self._lock:
            self._consecutive += 1
            pause = max(retry_after or 0.0, self.sink_backoff.delay(self._consecutive))
            self._paused_until = max(self._paused_until, time.monotonic() + pause)
            if self.failing_since is None:
                self.failing_since = utcnow()
            self.last_error = error
            return self.failing_since

    def note_rejection(self, error: str) -> None:
        """The sink answered (with a rejection): it is reachable."""
        with self._lock:
            self._consecutive = 0
            self.failing_since = None
            self.last_error = error

    def problem(self, now: datetime | None = None) -> str | None:
        """For ``/healthz``: why delivery counts as broken (failing longer than ``unhealthy_after``)."""
        if self.stopping:
            return None
        dead = self.check()
        if dead:
            return dead
        since = self.failing_since
        if since is None:
            return None
        failing = ((now or utcnow()) - since).total_seconds()
        if failing < self.options.unhealthy_after:
            return None
        if self.figures().backlog == 0:
            return None  # nothing waits for the sink (an old failure recorded before a restart)
        error = " ".join((self.last_error or "").split())[:160]
        return f"delivery to {self.name} failing for {_duration(failing)}: {error}"

    def figures(self) -> outbox.SinkFigures:
        """This sink's backlog and counts (read from the database)."""
        with self.engine.connect() as conn:
            return outbox.figures(conn).get(self.name) or outbox.SinkFigures(self.name)

    def prune_before(self) -> datetime:
        return utcnow() - timedelta(seconds=self.options.retention)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def claim_owner(instance: str) -> str:
    """``instance@host/pid-nonce``: unique per process start; the ``instance@host/`` part finds the claims of
    the same instance's earlier processes on this host, the pid tells whether one is gone."""
    return f"{instance[:200]}@{socket.gethostname()[:100]}/{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _gone(pid: str) -> bool:
    """Whether the process with this pid (on this host) is gone: not running, or it is this very process
    (a container restarted under the same host name gets the same pid: the earlier one is dead; claims are
    looked at per sink, and one process has one delivery service per sink)."""
    if pid == str(os.getpid()):
        return True
    try:
        return not pid_running(int(pid))  # a zombie (killed, not yet reaped) is gone too
    except ValueError:  # not an owner this code wrote: leave its claims alone
        return False
