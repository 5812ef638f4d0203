"""When a subscription is lost, and how often it may be recreated.

Servers report a subscription they lost (expired, forgotten, refused on this stream) with different codes;
every one of them means "subscribe again", never "wait". :class:`ResubscribeLimiter` makes sure that no
answer, however often it comes, turns into a resubscribe storm.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque

from exchangelib.errors import (
    ErrorInvalidPullSubscriptionId,
    ErrorProxiedSubscriptionCallFailure,
    ErrorSubscriptionAccessDenied,
    ErrorSubscriptionDelegateAccessNotSupported,
    ErrorSubscriptionUnsubsribed,
    TransportError,
)

from foldertrack.retry import RESUBSCRIBE_ERRORS, Backoff

__all__ = [
    "LOST_SUBSCRIPTION_ERRORS",
    "MIXED_USER_ERRORS",
    "ResubscribeLimiter",
    "error_code",
    "is_lost_subscription",
]

#: beyond RESUBSCRIBE_ERRORS: codes with which servers report a subscription they lost or will not serve
#: here; the subscription must be recreated (never waited for: it will not come back by itself)
LOST_SUBSCRIPTION_ERRORS: tuple[type[Exception], ...] = (
    *RESUBSCRIBE_ERRORS,
    ErrorSubscriptionUnsubsribed,  # exchangelib's spelling of ErrorSubscriptionUnsubscribed
    ErrorSubscriptionAccessDenied,
    ErrorSubscriptionDelegateAccessNotSupported,
    ErrorProxiedSubscriptionCallFailure,
    ErrorInvalidPullSubscriptionId,
)
#: codes exchangelib does not know come as TransportError("Unknown ResponseCode …: <code> …")
_UNKNOWN_SUBSCRIPTION_CODE = re.compile(r"Unknown ResponseCode in ResponseMessage: (Error\w*Subscription\w*)")
#: codes a server answers a stream with when it carries subscriptions of several users
MIXED_USER_ERRORS: tuple[type[Exception], ...] = (
    ErrorProxiedSubscriptionCallFailure,
    ErrorSubscriptionAccessDenied,
    ErrorSubscriptionDelegateAccessNotSupported,
)


def is_lost_subscription(exc: BaseException) -> bool:
    """The server no longer serves (some of) the stream's subscriptions: they must be recreated."""
    if isinstance(exc, LOST_SUBSCRIPTION_ERRORS):
        return True
    return isinstance(exc, TransportError) and bool(_UNKNOWN_SUBSCRIPTION_CODE.search(str(exc)))


def error_code(exc: BaseException) -> str:
    """The EWS response code behind ``exc`` (also for codes exchangelib does not know)."""
    found = _UNKNOWN_SUBSCRIPTION_CODE.search(str(exc))
    return found.group(1) if found else type(exc).__name__


class ResubscribeLimiter:
    """Spaces out (re)subscriptions of a mailbox so that no failure mode becomes a storm.

    The first ``free`` attempts within ``window`` seconds go at once; each further one waits for an
    exponentially growing interval (with jitter, from :class:`~foldertrack.retry.Backoff`) after the
    previous. Attempts older than the window are forgotten, so a mailbox that recovers starts afresh.
    Thread-safe: workers ask, the metrics and status read.
    """

    def __init__(self, free: int = 3, window: float = 120.0, backoff: Backoff | None = None):
        self.free = free
        self.window = window
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0, jitter=0.5)
        self._lock = threading.Lock()
        self._attempts: dict[str, deque[float]] = {}
        self._due: dict[str, float] = {}  # mailbox → when the held attempt may go
        self.total = 0  # subscriptions made (first ones and resubscribes)
        self.held = 0  # attempts that had to wait

    def acquire(self, mailbox: str, now: float | None = None) -> float:
        """0.0 and the attempt is recorded, or the seconds to wait before asking again."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._attempts.setdefault(mailbox, deque())
            while recent and now - recent[0] > self.window:
                recent.popleft()
            if len(recent) >= self.free:
                due = self._due.get(mailbox)
                if due is None:
                    due = recent[-1] + self._backoff.delay(len(recent) - self.free + 1)
                    self._due[mailbox] = due
                if now < due:
                    self.held += 1
                    return due - now
            self._due.pop(mailbox, None)
            recent.append(now)
            self.total += 1
            return 0.0

    def recent(self, mailbox: str, now: float | None = None) -> int:
        """Subscriptions of ``mailbox`` within the window (for ``status``)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sum(1 for t in self._attempts.get(mailbox, ()) if now - t <= self.window)

    def forget(self, mailbox: str) -> None:
        with self._lock:
            self._attempts.pop(mailbox, None)
            self._due.pop(mailbox, None)
