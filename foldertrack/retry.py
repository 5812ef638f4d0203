"""The one retry layer: which failures are transient, and how long to wait before the next attempt.

Work is never retried in a blocking loop: the dispatcher re-schedules it, after the delay computed here
with tenacity's exponential back-off with jitter. ``ErrorServerBusy`` carries the server's own back-off,
which wins over ours and applies to that mailbox only.
"""

from __future__ import annotations

import requests
import tenacity
from exchangelib.errors import (
    ErrorADUnavailable,
    ErrorBatchProcessingStopped,
    ErrorConnectionFailed,
    ErrorExceededConnectionCount,
    ErrorExpiredSubscription,
    ErrorInsufficientResources,
    ErrorInternalServerError,
    ErrorInternalServerTransientError,
    ErrorInvalidSubscription,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorMissedNotificationEvents,
    ErrorNoRespondingCASInDestinationSite,
    ErrorProxyRequestProcessingFailed,
    ErrorReadEventsFailed,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
    ErrorTimeoutExpired,
    ErrorTooManyObjectsOpened,
    RateLimitError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)

from foldertrack.errors import DatabaseError, TransientSinkError
from foldertrack.sources.graph.errors import GraphTransientError

#: Subscription errors after which we resubscribe (never with an old watermark).
RESUBSCRIBE_ERRORS: tuple[type[Exception], ...] = (
    ErrorSubscriptionNotFound,
    ErrorInvalidSubscription,
    ErrorExpiredSubscription,
    ErrorMissedNotificationEvents,
    ErrorReadEventsFailed,
)

#: Failures worth another attempt later. A raw ``requests`` exception is what a dropped stream looks like.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ErrorServerBusy,
    ErrorInternalServerTransientError,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorTimeoutExpired,
    ErrorTooManyObjectsOpened,
    RateLimitError,
    TransportError,
    requests.exceptions.RequestException,
    ConnectionError,
    TimeoutError,
    TransientSinkError,
    DatabaseError,
    GraphTransientError,  # Graph 429/503 (GraphThrottled), 5xx, timeouts, connection failures
    *RESUBSCRIBE_ERRORS,
)


#: EWS response codes that say "try again later". Every other response code (ErrorNonExistentMailbox,
#: ErrorImpersonateUserDenied, ErrorAccessDenied…) needs someone to change something first. exchangelib
#: derives all of them from TransportError, so they must be told apart by code, not by that base class.
TRANSIENT_RESPONSE_ERRORS: tuple[type[Exception], ...] = (
    ErrorServerBusy,
    ErrorInternalServerTransientError,
    ErrorInternalServerError,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorTimeoutExpired,
    ErrorTooManyObjectsOpened,
    ErrorConnectionFailed,
    ErrorADUnavailable,
    ErrorExceededConnectionCount,
    ErrorBatchProcessingStopped,
    ErrorInsufficientResources,
    ErrorNoRespondingCASInDestinationSite,
    ErrorProxyRequestProcessingFailed,
    *RESUBSCRIBE_ERRORS,
)


def is_transient(exc: BaseException) -> bool:
    """True when the same work may succeed later without anyone changing anything."""
    if isinstance(exc, UnauthorizedError):
        return False
    if isinstance(exc, ResponseMessageError):
        return isinstance(exc, TRANSIENT_RESPONSE_ERRORS)
    return isinstance(exc, TRANSIENT_ERRORS) or _is_database_outage(exc)


def _is_database_outage(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


#: exchangelib raises ``ErrorServerBusy`` itself for HTTP 503 and closed connections, with a back-off of its
#: own choosing (10 s); those messages start like this. Only the server's ``BackOffMilliseconds`` is binding.
_EXCHANGELIB_GUESSES = ("Reraised from", "Caused by")


def server_back_off(exc: BaseException) -> float | None:
    """The back-off (seconds) the server asked for in ``ErrorServerBusy``'s ``BackOffMilliseconds``; None
    when it named none (then our own exponential back-off applies)."""
    if not isinstance(exc, ErrorServerBusy) or not exc.back_off:
        return None
    if str(exc).startswith(_EXCHANGELIB_GUESSES):
        return None
    return float(exc.back_off)


class Backoff:
    """Exponential back-off with jitter, computed by tenacity, for work that the dispatcher re-schedules."""

    def __init__(self, initial: float = 0.5, maximum: float = 60.0, jitter: float = 0.5):
        self._wait = tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` ≥ 1 failures so far)."""
        state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = max(1, attempt)
        return float(self._wait(state))


def describe(exc: BaseException) -> str:
    """One line for logs and the dead-letter table: the true cause (EWS code and message, or connection
    refused / DNS / TLS / timeout / HTTP status: :mod:`foldertrack.ops.causes`), no secrets."""
    from foldertrack.ops.causes import classify

    return classify(exc).text[:1000]
