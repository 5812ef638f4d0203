"""One worker thread with a FIFO and a retry schedule: what mailbox feedback runs on, so a delivery worker
only enqueues and never waits for Exchange.

A handler returns ``None`` when the item is done, or seconds after which to run it again (a transient
failure); the back-off itself is computed by the caller with :class:`foldertrack.retry.Backoff`, so this is
a scheduler, not a second retry policy.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryQueue(Generic[T]):
    """``put(item)`` from any thread; ``handler(item)`` runs on the queue's own thread, started lazily."""

    def __init__(self, handler: Callable[[T], float | None], name: str) -> None:
        self._handler = handler
        self._name = name
        self._cv = threading.Condition()
        self._ready: deque[T] = deque()
        self._later: list[tuple[float, int, T]] = []  # (monotonic due time, tie-breaker, item)
        self._order = itertools.count()
        self._unfinished = 0  # put and not yet done: ready, scheduled or running
        self._closing = False
        self._thread: threading.Thread | None = None
        self._dropped: list[T] = []  # retries due after close() began

    def put(self, item: T) -> bool:
        """Queue ``item``; False once the queue is closing."""
        with self._cv:
            if self._closing:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._ready.append(item)
            self._unfinished += 1
            self._cv.notify_all()
        return True

    def wait_idle(self, timeout: float) -> bool:
        """True once every item put is done (retries included); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout: float) -> list[T]:
        """Finish the ready items (up to ``timeout``), stop the thread; returns the retries given up."""
        with self._cv:
            self._closing = True
            dropped = [item for _, _, item in self._later]
            self._unfinished -= len(self._later)
            self._later.clear()
            thread = self._thread
            self._cv.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._cv:
            return dropped + self._dropped

    def _next(self) -> T | None:
        with self._cv:
            while True:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    self._ready.append(heapq.heappop(self._later)[2])
                if self._ready:
                    return self._ready.popleft()
                if self._closing:
                    return None
                self._cv.wait(self._later[0][0] - now if self._later else None)

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            again: float | None = None
            try:
                again = self._handler(item)
            except Exception:  # the loop survives anything one item does
                log.exception("%s: handler failed", self._name)
            with self._cv:
                if again is not None and not self._closing:
                    heapq.heappush(self._later, (time.monotonic() + again, next(self._order), item))
                else:
                    if again is not None:
                        self._dropped.append(item)
                    self._unfinished -= 1
                self._cv.notify_all()
