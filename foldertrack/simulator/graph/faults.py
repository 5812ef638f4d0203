"""``sim.graph.faults``: what a test can make Graph do wrong, and what it saw.

- ``throttle(requests=N | seconds=S, retry_after=R, status=429|503, mailbox=None)``: the next requests
  (of one mailbox, or any) answer 429 ``TooManyRequests`` / 503 ``ServiceNotAvailable`` with
  ``Retry-After: R``.
- ``concurrency_limit`` (default 4, Graph's per-mailbox limit for Outlook resources): a request beyond it
  gets 429 ``ApplicationThrottled`` ("MailboxConcurrency"); ``peak(mailbox)`` is the most seen at once.
- ``expire_delta_tokens()``: every delta/skip token issued so far answers 410 ``SyncStateNotFound``.
- ``hold = threading.Event()``: admitted requests stall (holding their concurrency slot) until it is set.
- ``drop_notifications(n)``: the next ``n`` change notifications are never sent (lost in transit).

https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from foldertrack.simulator.graph import errors

DEFAULT_CONCURRENCY = 4


@dataclass
class _Throttle:
    status: int
    retry_after: float
    remaining: int | None
    until: float | None
    mailbox: str | None


class GraphFaults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttles: list[_Throttle] = []
        self.concurrency_limit = DEFAULT_CONCURRENCY
        self._in_flight: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self.delta_generation = 0
        self.dropped_notifications = 0
        self._drop = 0
        self.requests: Counter[str] = Counter()  # by mailbox ("" for /subscriptions)
        #: set to an Event to stall admitted mailbox requests until it is set (at most ``hold_timeout``)
        self.hold: threading.Event | None = None
        self.hold_timeout = 10.0
        self.injected: Counter[str] = Counter()

    def throttle(
        self,
        requests: int | None = None,
        seconds: float | None = None,
        retry_after: float = 1.0,
        status: int = 429,
        mailbox: str | None = None,
    ) -> None:
        if status not in (429, 503):
            raise ValueError("status must be 429 or 503")
        if requests is None and seconds is None:
            requests = 1
        until = time.monotonic() + seconds if seconds is not None else None
        with self._lock:
            self._throttles.append(
                _Throttle(status, retry_after, requests, until, mailbox.lower() if mailbox else None)
            )

    def count(self, name: str) -> None:
        with self._lock:
            self.injected[name] += 1

    def expire_delta_tokens(self) -> None:
        with self._lock:
            self.delta_generation += 1

    def drop_notifications(self, count: int = 1) -> None:
        with self._lock:
            self._drop += count

    def take_drop(self) -> bool:
        with self._lock:
            if self._drop <= 0:
                return False
            self._drop -= 1
            self.dropped_notifications += 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._throttles.clear()
            self._drop = 0
            self.concurrency_limit = DEFAULT_CONCURRENCY

    def check(self, mailbox: str) -> None:
        """Raise the injected throttling answer for this request, if any (counts the request)."""
        now = time.monotonic()
        with self._lock:
            self.requests[mailbox] += 1
            for rule in list(self._throttles):
                if rule.until is not None and now > rule.until:
                    self._throttles.remove(rule)
                    continue
                if rule.mailbox is not None and rule.mailbox != mailbox:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._throttles.remove(rule)
                self.injected[str(rule.status)] += 1
                if rule.status == 503:
                    raise errors.unavailable(rule.retry_after)
                raise errors.throttled(rule.retry_after)

    def enter(self, mailbox: str) -> None:
        with self._lock:
            if self._in_flight[mailbox] >= self.concurrency_limit:
                self.injected["concurrency"] += 1
                raise errors.throttled(
                    1, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
                )
            self._in_flight[mailbox] += 1
            self._peak[mailbox] = max(self._peak[mailbox], self._in_flight[mailbox])

    def leave(self, mailbox: str) -> None:
        with self._lock:
            self._in_flight[mailbox] -= 1

    def peak(self, mailbox: str) -> int:
        with self._lock:
            return self._peak[mailbox.lower()]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "throttles": len(self._throttles),
                "concurrency_limit": self.concurrency_limit,
                "delta_generation": self.delta_generation,
                "dropped_notifications": self.dropped_notifications,
                "requests": dict(self.requests),
                "injected": dict(self.injected),
                "peak": dict(self._peak),
            }
