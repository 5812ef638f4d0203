"""Graph's error responses: ``{"error": {"code", "message", "innerError": {…}}}`` with its real codes.

https://learn.microsoft.com/graph/errors
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any


class GraphError(Exception):
    """One error answer; ``headers`` carries ``Retry-After`` or ``WWW-Authenticate`` when Graph sends them."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }


def not_found(what: str = "The specified object was not found in the store.") -> GraphError:
    return GraphError(404, "ErrorItemNotFound", what)


def malformed_id() -> GraphError:
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def throttled(retry_after: float, code: str = "TooManyRequests", message: str | None = None) -> GraphError:
    seconds = max(1, round(retry_after))
    return GraphError(
        429,
        code,
        message or "Too many requests. Retry after the time in Retry-After.",
        {"Retry-After": str(seconds)},
    )


def unavailable(retry_after: float) -> GraphError:
    return GraphError(
        503,
        "ServiceNotAvailable",
        "The service is temporarily unavailable. Retry after the time in Retry-After.",
        {"Retry-After": str(max(1, round(retry_after)))},
    )


def sync_state_not_found() -> GraphError:
    """An expired or unknown delta token: the client must start the delta chain again."""
    return GraphError(
        410,
        "SyncStateNotFound",
        "The sync state generation is not found: the delta token expired or is invalid. Resync is required.",
    )


def unauthorized(message: str) -> GraphError:
    return GraphError(
        401,
        "InvalidAuthenticationToken",
        message,
        {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        },
    )
