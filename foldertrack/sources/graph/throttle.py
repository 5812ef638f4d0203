"""Per-mailbox politeness: at most 4 concurrent requests per mailbox (Graph's Outlook limit) and, after a
429/503, no request to that mailbox before its ``Retry-After`` has passed. Other mailboxes are not held.

https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits
A caller never waits longer than ``max_wait`` for a back-off: it gets :class:`GraphThrottled` instead, so a
worker is not parked for minutes (the dispatcher re-schedules the work).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from foldertrack.sources.graph.errors import GraphThrottled

MAX_CONCURRENT_PER_MAILBOX = 4


@dataclass
class _Mailbox:
    slots: threading.BoundedSemaphore
    blocked_until: float = 0.0
    backoffs: int = 0


class MailboxThrottle:
    def __init__(self, max_concurrent: int = MAX_CONCURRENT_PER_MAILBOX, max_wait: float = 30.0) -> None:
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox] = {}
        self._stop = threading.Event()

    def _box(self, mailbox: str) -> _Mailbox:
        key = mailbox.lower()
        with self._lock:
            box = self._boxes.get(key)
            if box is None:
                box = self._boxes[key] = _Mailbox(threading.BoundedSemaphore(self.max_concurrent))
            return box

    def back_off(self, mailbox: str, seconds: float) -> None:
        """The server asked this mailbox to wait ``seconds`` (``Retry-After``)."""
        box = self._box(mailbox)
        with self._lock:
            box.blocked_until = max(box.blocked_until, time.monotonic() + max(0.0, seconds))
            box.backoffs += 1

    def retry_at(self, mailbox: str) -> float:
        """``time.monotonic()`` value before which this mailbox should not be asked again (0: now)."""
        box = self._box(mailbox)
        with self._lock:
            return box.blocked_until

    def backoffs(self, mailbox: str) -> int:
        box = self._box(mailbox)
        with self._lock:
            return box.backoffs

    def close(self) -> None:
        """Wake every waiter (shutdown): they get :class:`GraphThrottled`."""
        self._stop.set()

    @contextmanager
    def slot(self, mailbox: str) -> Iterator[None]:
        box = self._box(mailbox)
        deadline = time.monotonic() + self.max_wait
        while True:
            with self._lock:
                wait = box.blocked_until - time.monotonic()
            if wait <= 0:
                break
            if time.monotonic() + wait > deadline or self._stop.is_set():
                raise GraphThrottled(
                    f"Graph asked mailbox {mailbox} to wait {wait:.1f}s more", status=429, retry_after=wait
                )
            self._stop.wait(wait)  # a server-given back-off is a deadline, not a guess
        if not box.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise GraphThrottled(f"no free request slot for mailbox {mailbox}", retry_after=1.0)
        try:
            yield
        finally:
            box.slots.release()
