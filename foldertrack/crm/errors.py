"""Turning Dataverse answers and transport failures into foldertrack's sink errors, with their true cause.

429, 503, other 5xx, timeouts and connection failures may pass by themselves: TransientSinkError, with the
server's ``Retry-After``. Any other 4xx is the server rejecting this request: PermanentSinkError with the
Dataverse ``error.code`` and ``error.message``. Messages name the operation and the cause (connection
refused, DNS, TLS, timeout, HTTP status, Dataverse code), never a header, a token or a secret.

Reference: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
and https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
"""

from __future__ import annotations

import email.utils
import time

import requests

from foldertrack.errors import PermanentSinkError, SinkError, TransientSinkError

#: statuses that say "later": throttling, and the server or a gateway in front of it being unwell
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DataverseAuthError(TransientSinkError):
    """Getting or using a token failed (wrong secret, unknown app, no application user). Nothing is wrong
    with the item: delivery keeps it and retries, ``status`` shows the message until the credentials are
    fixed."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def dataverse_error(response: requests.Response) -> tuple[str | None, str]:
    """``(code, message)`` from an OData error body ``{"error": {"code", "message"}}``; else the reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code")
        message = str(error.get("message") or "").strip()
        return (str(code) if code not in (None, "") else None), message.splitlines()[0] if message else ""
    text = (response.text or "").strip().splitlines()
    return None, (text[0][:300] if text else response.reason or "")


def error_for_response(what: str, response: requests.Response) -> SinkError:
    """The sink error for a failed HTTP answer; ``what`` names the request (``PATCH emails(…)``)."""
    code, message = dataverse_error(response)
    status = response.status_code
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    text = f"Dataverse {what}: {detail}"
    if status == 401:
        return DataverseAuthError(text + " (the token was refused: check the application user)", code=code)
    if status == 403:  # the application user lacks a privilege: the setup is wrong, not the mail
        return DataverseAuthError(
            text + " (forbidden: check the application user's security role)", code=code
        )
    if 300 <= status < 400:  # not followed: an AD FS login page or http → https is a wrong dataverse.url
        where = response.headers.get("Location", "")
        return DataverseAuthError(
            f"{text} (redirected{' to ' + where.split('?')[0][:200] if where else ''}: check dataverse.url)",
            code=code,
        )
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return TransientSinkError(text, retry_after=retry_after, code=code)
    return PermanentSinkError(text, code=code)


def error_for_exception(what: str, target: str, error: Exception) -> TransientSinkError:
    """A transport failure (no HTTP answer) as a transient error naming its real cause."""
    return TransientSinkError(f"Dataverse {what}: {describe_transport_error(target, error)}")


def describe_transport_error(target: str, error: Exception) -> str:
    """``connection refused by HOST``, ``DNS lookup of HOST failed``, ``TLS …``, ``timed out …``."""
    chain = _chain(error)
    text = " ".join(str(e) for e in chain)
    lowered = text.lower()
    if isinstance(error, requests.exceptions.SSLError) or "certificate" in lowered or "ssl" in lowered:
        reason = _ssl_reason(chain) or "handshake failed"
        return f"TLS error talking to {target}: {reason}"
    if isinstance(error, requests.exceptions.Timeout) or "timed out" in lowered:
        kind = "connecting to" if isinstance(error, requests.exceptions.ConnectTimeout) else "waiting for"
        return f"timed out {kind} {target}"
    if (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or (
            "getaddrinfo" in lowered
            or "failed to resolve" in lowered
            or "temporary failure in name" in lowered
        )
    ):
        return f"DNS lookup of {target} failed"
    if "refused" in lowered:
        return f"connection refused by {target}"
    if "reset" in lowered or "aborted" in lowered or "remote end closed" in lowered:
        return f"connection to {target} dropped"
    return f"cannot reach {target}: {type(chain[-1]).__name__}"


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        reason = getattr(current, "reason", None)
        current = (
            nested
            or (reason if isinstance(reason, BaseException) else None)
            or current.__cause__
            or current.__context__
        )
    return seen


def _ssl_reason(chain: list[BaseException]) -> str | None:
    for error in reversed(chain):
        verify = getattr(error, "verify_message", None)
        if verify:
            return f"certificate verify failed: {verify}"
        reason = getattr(error, "reason", None)
        if isinstance(reason, str) and reason:
            return reason.replace("_", " ").lower()
    return None
