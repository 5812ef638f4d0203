"""Graph failures as foldertrack errors, each with its true cause (HTTP status and Graph error code).

https://learn.microsoft.com/graph/errors. 429 and 503 carry ``Retry-After``; 410 ``SyncStateNotFound``
means the delta cursor is no longer valid and the chain must start again.
"""

from __future__ import annotations

from foldertrack.errors import ExchangeError


class GraphError(ExchangeError):
    """Graph answered with an error (``status``, ``code`` as Graph names it) or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class GraphTransientError(GraphError):
    """May pass by itself: 429, 5xx, timeouts, connection failures. ``retry_after`` is the least wait."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status, code)
        self.retry_after = retry_after


class GraphThrottled(GraphTransientError):
    """429 / 503 with ``Retry-After``: that mailbox backs off (:mod:`.throttle`), others carry on."""


class GraphAuthError(GraphError):
    """No usable token: the app, its secret or certificate, or its permissions are wrong."""


class GraphSyncStateNotFound(GraphError):
    """410: the delta token expired; restart the chain (the ledger keeps the resync idempotent)."""


class GraphNotFound(GraphError):
    """404: the mailbox, folder or message does not exist (any more)."""
