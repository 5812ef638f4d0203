"""One delivery worker: its partitions' due outbox entries, one at a time, in id order per mail key.

At least once: an entry is marked delivered only after the sink returned, so a crash in between sends it
again, and the sink's idempotency (keyed by the mail key, plus the entry's idempotency key) makes that
harmless. A worker never sleeps on a back-off: a failed entry gets its ``next_attempt_at`` and the worker
moves on, or waits on the service's condition until something falls due.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy.engine import Row

from foldertrack.delivery import outbox
from foldertrack.delivery.rebuild import apply_send_options, load_activity
from foldertrack.delivery.service import DeliveryService
from foldertrack.errors import PermanentSinkError, SinkError, TransientSinkError
from foldertrack.retry import describe
from foldertrack.sinks.base import Delivery, delivering
from foldertrack.state import watch_store as store
from foldertrack.state.types import utcnow

log = logging.getLogger("foldertrack.delivery")

_IDEMPOTENCY_NAMESPACE = uuid.UUID("7f0c52a4-5b8e-4b53-9a51-4f6d2c1e9b10")


def idempotency_key(row: Row) -> str:
    """Stable for every retry and replay of one entry, unique per entry (and per database)."""
    name = f"{row.sink}\n{row.mail_key}\n{row.id}\n{row.created_at.isoformat()}"
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, name))


#: confirmed entries marked delivered in one write transaction (a crash before the mark re-sends them,
#: which the sinks' idempotency makes harmless)
FLUSH_EVERY = 32


class DeliveryWorker(threading.Thread):
    """Delivers the entries of ``partitions``; survives any error (logged, counted, retried)."""

    def __init__(self, service: DeliveryService, index: int, partitions: tuple[int, ...]):
        super().__init__(name=f"foldertrack-delivery-{service.name}-{index}", daemon=True)
        self.service = service
        self.index = index
        self.partitions = partitions
        self._next_prune = time.monotonic() + 5.0
        #: entries the sink confirmed, not yet marked: written together (one write transaction per
        #: :data:`FLUSH_EVERY` entries, not one per entry: the state writer lock is the bottleneck of a burst)
        self._done: list[tuple[Row, int, str, float, str | None]] = []

    def run(self) -> None:
        service = self.service
        while not service.stopping:
            seen = service.generation
            try:
                wait = self._round()
            except Exception as exc:  # database unavailable, a bug: never let the thread die
                log.warning("delivery to %s: worker %d: %s", service.name, self.index, describe(exc))
                wait = service.options.scan_interval
            if wait > 0:
                service.wait(seen, wait)

    def _round(self) -> float:
        """Deliver what is due; returns how long to wait before looking again (0: at once)."""
        service = self.service
        paused = service.paused_for()
        if paused > 0:
            return paused
        if self.index == 0 and time.monotonic() >= self._next_prune:
            self._prune()
        with service.engine.connect() as conn:
            rows = outbox.due(conn, service.name, self.partitions, service.options.batch, service.owner)
            if not rows:
                next_at = outbox.next_due_at(conn, service.name, self.partitions, service.owner)
        if not rows:
            if next_at is None:
                return service.options.scan_interval
            until = (next_at - utcnow()).total_seconds()
            return min(service.options.scan_interval, max(0.005, until))
        claim_until = utcnow() + timedelta(seconds=service.options.claim_ttl)
        with store.writing(service.engine) as conn:
            mine = outbox.claim(conn, [r.id for r in rows], service.owner, claim_until)
        if not mine:
            return service.options.scan_interval  # another instance got there first
        blocked: set[str] = set()
        try:
            for index, row in enumerate(rows):
                if service.stopping or service.paused_for() > 0:
                    return 0.0
                if (claim_until - utcnow()).total_seconds() < service.options.claim_ttl / 3:
                    # a slow CRM: extend the claim on the rest of the batch before it can run out
                    self._flush()
                    claim_until = utcnow() + timedelta(seconds=service.options.claim_ttl)
                    rest = [r.id for r in rows[index:] if r.id in mine]
                    with store.writing(service.engine) as conn:
                        mine = outbox.claim(conn, rest, service.owner, claim_until)
                if row.id not in mine:
                    continue
                if row.mail_key in blocked:
                    continue  # an earlier entry of this key just failed: keep the order
                if not self._deliver(row):
                    blocked.add(row.mail_key)
                if len(self._done) >= FLUSH_EVERY:
                    self._flush()
        finally:
            self._flush()
        return 0.0

    def _deliver(self, row: Row) -> bool:
        """Apply one entry; True when it is done (delivered, dead or skipped), False to retry later."""
        service = self.service
        attempt = row.attempts + 1
        with service.engine.connect() as conn:
            if outbox.later_delivered(conn, row):
                stored, skip = None, "superseded by a later delivered entry"
            elif row.op == "upsert":
                stored = load_activity(conn, row.mail_key)
                skip = "removed by on_leave: delete" if stored is not None and stored.deleted else None
            else:
                stored, skip = None, None
        if skip is not None:
            self._finish(row, attempt, "skipped", 0.0, note=f"skipped: {skip}")
            return True
        delivery = Delivery(row.id, idempotency_key(row), row.op, row.mail_key, row.mailbox, attempt)
        started = time.monotonic()
        try:
            with delivering(delivery):
                if row.op == "upsert":
                    if stored is None:
                        raise PermanentSinkError(
                            "no local activity for this key (deleted from the database?)"
                        )
                    service.sink.upsert(apply_send_options(stored.activity, outbox.send_options(row)))
                elif row.op == "untrack":
                    service.sink.untrack(row.mail_key)
                else:
                    service.sink.delete(row.mail_key)
        except PermanentSinkError as exc:
            self._dead(row, attempt, exc, time.monotonic() - started)
            return True
        except Exception as exc:
            unexpected = not isinstance(exc, SinkError)
            if unexpected and attempt >= service.options.max_unexpected_attempts:
                log.error("delivery to %s: giving up on entry %d", service.name, row.id, exc_info=True)
                failure = PermanentSinkError(f"failed {attempt} times unexpectedly: {_message(exc)}")
                self._dead(row, attempt, failure, time.monotonic() - started)
                return True
            self._retry(row, attempt, exc, time.monotonic() - started)
            return False
        self._finish(row, attempt, "delivered", time.monotonic() - started)
        return True

    # -- outcomes --------------------------------------------------------------------------------------------

    def _finish(self, row: Row, attempt: int, outcome: str, seconds: float, note: str | None = None) -> None:
        """Queue the entry's mark; :meth:`_flush` writes it (at the latest when the round ends)."""
        self._done.append((row, attempt, outcome, seconds, note))

    def _flush(self) -> None:
        """Mark every confirmed entry in one write transaction, then observe and give feedback."""
        done, self._done = self._done, []
        if not done:
            return
        service = self.service
        for _row, _attempt, outcome, _seconds, _note in done:
            if outcome == "delivered":
                service.note_success()  # counted before the marks commit: figures never show backlog 0 first
        with store.writing(service.engine) as conn:
            for row, attempt, outcome, _seconds, note in done:
                outbox.mark_delivered(conn, row.id, attempt, note, owner=service.owner)
                if outcome == "delivered" and row.op == "upsert":
                    outbox.settle_earlier_dead(conn, row)
            delivered = sum(1 for _row, _a, outcome, _s, _n in done if outcome == "delivered")
            if delivered:
                outbox.note_success(conn, service.name, delivered)
        for row, _attempt, outcome, seconds, _note in done:
            self._observe(row, outcome, seconds)
            log.debug("delivery to %s: %s %s %s", service.name, outcome, row.op, row.mail_key[:200])
            if outcome == "delivered" and row.op == "upsert":
                self._feedback("confirmed", row.mailbox, row.mail_key)

    def _retry(self, row: Row, attempt: int, exc: Exception, seconds: float) -> None:
        service = self.service
        retry_after = exc.retry_after if isinstance(exc, TransientSinkError) else None
        error = _message(exc)
        delay = service.entry_backoff.delay(attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)  # the sink's Retry-After wins over our cap
        failing_since = service.note_transient(error, retry_after)
        self._flush()
        with store.writing(service.engine) as conn:
            outbox.mark_retry(
                conn, row.id, attempt, utcnow() + timedelta(seconds=delay), error, owner=service.owner
            )
            outbox.note_failure(conn, service.name, error, transient=True, failing_since=failing_since)
        self._observe(row, "retry", seconds)
        log.warning(
            "delivery to %s: %s %s failed (attempt %d), retrying in %.1fs: %s",
            service.name,
            row.op,
            row.mail_key[:200],
            attempt,
            delay,
            error,
            exc_info=not isinstance(exc, TransientSinkError) and attempt == 1,
        )

    def _dead(self, row: Row, attempt: int, exc: PermanentSinkError, seconds: float) -> None:
        service = self.service
        error = _message(exc)
        service.note_rejection(error)
        self._flush()
        with store.writing(service.engine) as conn:
            outbox.mark_dead(conn, row.id, attempt, error, owner=service.owner)
            outbox.note_failure(conn, service.name, error, transient=False, failing_since=None)
        self._observe(row, "dead", seconds)
        log.error(
            "delivery to %s: %s %s rejected, dead-lettered (replay with `foldertrack retry d%d`): %s",
            service.name,
            row.op,
            row.mail_key[:200],
            row.id,
            error,
        )
        self._feedback("failed", row.mailbox, row.mail_key, error)

    def _observe(self, row: Row, outcome: str, seconds: float) -> None:
        observer = self.service.observer
        if observer is not None:
            try:
                observer.delivered(self.service.name, row.op, outcome, seconds)
            except Exception as exc:  # hooks must not stop delivery
                log.debug("observer failed: %s", exc)

    def _feedback(self, what: str, *args: str) -> None:
        feedback = self.service.feedback
        if feedback is None:
            return
        try:
            getattr(feedback, what)(*args)
        except Exception as exc:  # feedback is a courtesy: never a reason to stop or retry delivery
            log.warning("mailbox feedback (%s) failed: %s", what, describe(exc))

    def _prune(self) -> None:
        service = self.service
        self._next_prune = time.monotonic() + service.options.prune_interval
        with store.writing(service.engine) as conn:
            pruned = outbox.prune(conn, service.prune_before())
        if pruned:
            log.info("delivery to %s: pruned %d delivered outbox entries", service.name, pruned)


def _message(exc: BaseException) -> str:
    """The sink's own message (with its code when it gave one), one line, no secrets."""
    code = getattr(exc, "code", None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, TransientSinkError | PermanentSinkError):
        text = describe(exc)
    return (f"[{code}] {text}" if code and code not in text else text)[:1000]
