"""Feedback in the mailbox: once the CRM confirms a mail (or delivery dead-letters it), the mail gets an
Outlook category, so its owner sees on any client, a phone included, that it reached the CRM.

The category goes on the mail's *current* item (the ledger's present rows for mailbox and key) through the
watcher's own :class:`~foldertrack.sources.base.MailSource` (``set_categories``), whichever it is: EWS reads
the categories and ChangeKey and writes with ``ConflictResolution="NeverOverwrite"`` (a change the user made
meanwhile is read again, never overwritten); Graph reads and PATCHes the immutable id. The user's own
categories are kept either way. An item gone meanwhile (:class:`~foldertrack.sources.base.ItemGone`) is
looked up again in the ledger: it moved, or left the tracked folders and is skipped.

The change it causes cannot re-trigger tracking: the source reports it as an update, and sync acts only on
creates and deletes. Feedback never raises into the delivery worker (it only enqueues; the source calls run
on a thread of its own): failures are logged with their context and counted. A service account with only
read rights on a mailbox (:class:`~foldertrack.sources.base.WriteBackDenied`) turns feedback off for that
mailbox, in this process and in ``mailbox_feedback`` (shown by ``status``); the next process start tries
again, and the first success turns it back on.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Row

from foldertrack.delivery import feedback_store
from foldertrack.delivery.feedback_queue import RetryQueue
from foldertrack.delivery.feedback_store import STORED_COUNTS, feedback_rows
from foldertrack.retry import Backoff, describe, is_transient, server_back_off
from foldertrack.sources.base import ItemGone, MailSource, WriteBackDenied
from foldertrack.state.schema import ledger
from foldertrack.state.watch_store import WriterBusy

__all__ = ["DEFAULT_CATEGORY", "DEFAULT_FAILED_CATEGORY", "MailboxFeedback", "feedback_rows"]

log = logging.getLogger(__name__)

DEFAULT_CATEGORY = "Tracked to CRM"
DEFAULT_FAILED_CATEGORY = "Tracking failed"


@dataclass
class _Request:
    mailbox: str
    key: str
    add: str
    remove: str
    outcome: str  # counted as "confirmed" or "failed"
    attempts: int = field(default=0, compare=False)  # transient failures so far
    seq: int = field(default=0, compare=False)  # a later request for the same mail supersedes this one


class MailboxFeedback:
    """Sets ``delivery.feedback_category`` / ``delivery.failed_category`` on tracked mails.

    Built from the watcher's ``MailSource`` (:func:`foldertrack.delivery.wiring.load_feedback`), the state
    engine and the loaded ``Config`` (``config.delivery``). ``confirmed``/``failed`` only queue the request,
    so a delivery worker never waits for Exchange; one thread of its own calls the source in order. A
    transient failure (throttling, a dropped connection) is tried again after the
    :class:`~foldertrack.retry.Backoff` delay (or the server's ``BackOffMilliseconds``), up to
    :attr:`max_attempts`, unless a newer mark of the same mail came meanwhile. ``counts`` is for metrics and
    tests.
    """

    #: attempts of one request that keeps failing for a transient reason (throttling, a dropped connection)
    max_attempts = 5

    def __init__(
        self,
        source: MailSource,
        engine: Engine,
        config: Any = None,
        *,
        category: str | None = None,
        failed_category: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        delivery = getattr(config, "delivery", None)
        self.source = source
        self.engine = engine
        self.category = category or getattr(delivery, "feedback_category", DEFAULT_CATEGORY)
        self.failed_category = failed_category or getattr(
            delivery, "failed_category", DEFAULT_FAILED_CATEGORY
        )
        self.backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self.counts: Counter[str] = Counter()
        self._unavailable: dict[str, str] = {}  # mailbox -> why, for this process
        self._pending: dict[str, Counter[str]] = {}  # counts not yet written to mailbox_feedback
        self._confirmed_available: set[str] = set()  # mailboxes a write succeeded in, this process
        self._lock = threading.Lock()
        self._queue: RetryQueue[_Request] = RetryQueue(self._handle, "mailbox-feedback")
        self._latest: dict[tuple[str, str], int] = {}  # (mailbox, key) -> seq of its newest request
        self._seq = 0

    # -- the hook ------------------------------------------------------------------------------------------

    def confirmed(self, mailbox: str, key: str) -> None:
        """The sink confirmed ``key``: add the tracked category, drop the failed one."""
        self._submit(_Request(mailbox.lower(), key, self.category, self.failed_category, "confirmed"))

    def failed(self, mailbox: str, key: str, reason: str) -> None:
        """Delivery dead-lettered ``key`` (``reason`` is the CRM's message, for the log only)."""
        log.debug("%s %s: delivery failed (%s); marking the mail", mailbox, key, reason)
        self._submit(_Request(mailbox.lower(), key, self.failed_category, self.category, "failed"))

    def unavailable(self) -> dict[str, str]:
        """Mailboxes where feedback is off in this process, and why."""
        with self._lock:
            return dict(self._unavailable)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every request is done, retries included (tests); False after ``timeout`` seconds."""
        return self._queue.wait_idle(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued requests (up to ``timeout``), give up pending retries, store the counts."""
        for request in self._queue.close(timeout):
            log.info("%s %s: shutting down; category %r not set", request.mailbox, request.key, request.add)
            self._count(request.mailbox, "errors", flush=False)
        self._flush(wait=True)

    # -- one request, on the feedback thread ---------------------------------------------------------------

    def _submit(self, request: _Request) -> None:
        with self._lock:
            self._seq += 1
            request.seq = self._latest[(request.mailbox, request.key)] = self._seq
        if not self._queue.put(request):
            log.debug("%s %s: feedback closed; %s not marked", request.mailbox, request.key, request.outcome)

    def _handle(self, request: _Request) -> float | None:
        """Mark the mail; seconds until the next attempt after a transient failure, else None (done)."""
        again = self._attempt(request)
        if again is None:
            with self._lock:
                if self._latest.get((request.mailbox, request.key)) == request.seq:
                    del self._latest[(request.mailbox, request.key)]
        return again

    def _attempt(self, request: _Request) -> float | None:
        mailbox, key = request.mailbox, request.key
        with self._lock:
            off = mailbox in self._unavailable
            superseded = self._latest.get((mailbox, key)) != request.seq
        if off or superseded:  # a retry must not undo a newer mark of the same mail
            self._count(mailbox, "skipped")
            return None
        try:
            outcome = self._apply(request)
        except WriteBackDenied as error:
            self._disable(mailbox, error.reason)
            return None
        except Exception as error:  # counted and logged, never raised
            request.attempts += 1
            if is_transient(error) and request.attempts < self.max_attempts:
                delay = max(self.backoff.delay(request.attempts), server_back_off(error) or 0.0)
                log.info(
                    "%s %s: %s; setting the category again in %.1fs", mailbox, key, describe(error), delay
                )
                self._count(mailbox, "retried")
                return delay
            log.warning("%s %s: could not set category %r: %s", mailbox, key, request.add, describe(error))
            self._count(mailbox, "errors", error=describe(error))
            return None
        self._count(mailbox, request.outcome if outcome in ("set", "already") else "missing")
        if outcome == "set" and mailbox not in self._confirmed_available:
            self._confirmed_available.add(mailbox)  # once per process: clears an old "unavailable"
            self._store(mailbox, available=True)
        return None

    def _apply(self, request: _Request) -> str:
        """Categorise every present copy of the mail in the mailbox: "set", "already" (nothing to change)
        or "missing" (no copy left where the ledger says, it moved on or left the tracked folders)."""
        mailbox, key = request.mailbox, request.key
        rows = self._present(mailbox, key)
        if not rows:
            log.info("%s %s: no tracked copy of the mail any more; category not set", mailbox, key)
            return "missing"
        outcomes: set[str] = set()
        for row in rows:
            item_id = row.item_id
            for attempt in (1, 2):
                try:
                    changed = self.source.set_categories(mailbox, item_id, request.add, request.remove)
                    outcomes.add("set" if changed else "already")
                    break
                except ItemGone:
                    moved = self._current_id(mailbox, key, row.folder_id)
                    if moved is None or moved == item_id or attempt == 2:
                        log.info("%s %s: the mail moved on; category not set", mailbox, key)
                        break
                    item_id = moved
        return "set" if "set" in outcomes else "already" if outcomes else "missing"

    def _present(self, mailbox: str, key: str) -> list[Row]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(ledger.c.item_id, ledger.c.folder_id).where(
                        ledger.c.mailbox == mailbox, ledger.c.activity_key == key, ledger.c.state == "present"
                    )
                )
            )

    def _current_id(self, mailbox: str, key: str, folder_id: str) -> str | None:
        """The ledger's item id for the mail now: in the same folder, else any present copy."""
        rows = self._present(mailbox, key)
        same = [r.item_id for r in rows if r.folder_id == folder_id]
        return (same or [r.item_id for r in rows] or [None])[0]

    # -- state and counts ----------------------------------------------------------------------------------

    def _disable(self, mailbox: str, reason: str) -> None:
        with self._lock:
            self._unavailable[mailbox] = reason
        log.warning(
            "%s: feedback categories turned off: the service account may not change mails there (%s)",
            mailbox,
            reason,
        )
        self._count(mailbox, "errors", error=reason)
        self._store(mailbox, available=False, reason=reason)

    def _count(self, mailbox: str, what: str, *, error: str | None = None, flush: bool = True) -> None:
        with self._lock:
            self.counts[what] += 1
            if what in STORED_COUNTS:
                self._pending.setdefault(mailbox, Counter())[what] += 1
        if error is not None:
            self._store(mailbox, error=error)
        if flush:
            self._flush(wait=False)

    def _flush(self, *, wait: bool) -> None:
        """Store the pending counts; when our other SQLite writers are busy (``wait=False``), next time."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            feedback_store.record(self.engine, {m: {"counts": c} for m, c in pending.items()}, wait=wait)
        except Exception as error:  # busy or down: keep the counts for the next write
            with self._lock:
                for mailbox, counts in pending.items():
                    self._pending.setdefault(mailbox, Counter()).update(counts)
            if not isinstance(error, WriterBusy):
                log.warning("feedback counts not stored: %s", describe(error))

    def _store(self, mailbox: str, **values: Any) -> None:
        try:
            feedback_store.record(self.engine, {mailbox: values})
        except Exception as error:
            log.warning("%s: feedback state not stored: %s", mailbox, describe(error))
