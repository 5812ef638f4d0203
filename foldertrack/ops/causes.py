"""The true cause of a failure, for logs, status and the ``code`` label of ``foldertrack_errors_total``.

exchangelib hides transport failures behind EWS-looking classes: a refused connection or a DNS failure
arrives as ``ErrorTimeoutExpired("Reraised from ConnectionError(...)")``, an HTTP 503 or a closed
connection as ``ErrorServerBusy("Caused by HTTP 503 response")`` or ``ErrorServerBusy("Reraised from
...")`` with a back-off of its own guessing. Only an ``ErrorServerBusy`` the *server* sent (its SOAP fault,
usually with ``BackOffMilliseconds``) is throttling; everything else is named by what really happened,
found by walking the exception chain (``__cause__`` / ``__context__``).

Codes (a small, bounded set, safe as a metric label): ``connection_refused``, ``dns``, ``tls``,
``timeout``, ``connection_closed``, ``http_<status>``, ``unauthorized``, an EWS response code
(``ErrorServerBusy``, ``ErrorNonExistentMailbox``...), a CRM error code (Dataverse ``0x80040216``, Entra
``invalid_client``), else the exception's class name.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from dataclasses import dataclass

import requests
import urllib3.exceptions as u3

#: exchangelib's own wrappers start like this; such an exception is not what the server said.
EXCHANGELIB_WRAPPERS = ("Reraised from", "Caused by")
MAX_DETAIL = 300
_HTTP_STATUS = re.compile(r"(?:HTTP |Code: )(\d{3})\b")
_REFUSED = "connection refused"


@dataclass(frozen=True)
class Cause:
    """What went wrong: ``code`` (label), ``text`` (one line for logs and status), ``throttling`` (only a
    server's own ``ErrorServerBusy``)."""

    code: str
    text: str
    throttling: bool = False


def classify(exc: BaseException) -> Cause:
    """The true cause of ``exc`` (never raises)."""
    try:
        return _classify(exc)
    except Exception:  # a classifier bug must not hide the failure itself
        return Cause(type(exc).__name__, _plain(exc))


def error_code(exc: BaseException) -> str:
    """The metric label for ``exc``: see :func:`classify`."""
    return classify(exc).code


def _classify(exc: BaseException) -> Cause:
    from exchangelib.errors import ErrorServerBusy, ResponseMessageError, UnauthorizedError

    chain = _chain(exc)
    wrapped = str(exc).startswith(EXCHANGELIB_WRAPPERS)
    if isinstance(exc, ErrorServerBusy) and not wrapped:
        back_off = getattr(exc, "back_off", None)
        wait = f" (server asks to back off {back_off:g}s)" if back_off else ""
        return Cause("ErrorServerBusy", f"{_plain(exc)}{wait}", throttling=True)
    if isinstance(exc, ResponseMessageError) and not wrapped:
        return Cause(type(exc).__name__, _plain(exc))  # the server's own EWS response code
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code and not isinstance(exc, OSError):
        return Cause(code[:64], _plain(exc))  # a CRM's (Dataverse, Entra ID) own error code
    transport = _transport(chain)
    if transport is not None:
        return transport
    if isinstance(exc, UnauthorizedError) or any("HTTP 401" in str(e) for e in chain):
        return Cause("unauthorized", _named(exc, wrapped, "credentials refused: HTTP 401"))
    for e in chain:
        status = _status(e)
        if status is not None:
            return Cause(f"http_{status}", _named(e, wrapped, f"HTTP {status} from the server"))
    return Cause(type(exc).__name__, _plain(exc))


def _transport(chain: list[BaseException]) -> Cause | None:
    """A network-level cause anywhere in the chain, most specific first."""

    def find(*types: type[BaseException]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, types)), None)

    if find(ConnectionRefusedError) is not None or any(_REFUSED in str(x).lower() for x in chain):
        return Cause("connection_refused", f"connection refused{_where(chain)}")
    if (e := find(socket.gaierror, u3.NameResolutionError)) is not None:
        return Cause("dns", f"DNS lookup failed{_where(chain)}: {_root(e)}")
    if (e := find(ssl.SSLError, u3.SSLError, requests.exceptions.SSLError)) is not None:
        return Cause("tls", f"TLS failed{_where(chain)}: {_root(e)}")
    timeouts = (socket.timeout, TimeoutError, u3.TimeoutError, requests.exceptions.Timeout)
    if (e := find(*timeouts)) is not None:
        return Cause("timeout", f"timed out{_where(chain)}: {_root(e)}")
    closed = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, u3.ProtocolError)
    if find(*closed, http.client.RemoteDisconnected) is not None or any(
        "closed connection" in str(x) for x in chain
    ):
        return Cause("connection_closed", f"connection closed by the server{_where(chain)}")
    if (e := find(requests.exceptions.ConnectionError)) is not None:
        return Cause("connection_failed", f"connection failed{_where(chain)}: {_root(e)}")
    return None


def _named(exc: BaseException, wrapped: bool, cause: str) -> str:
    """``UnauthorizedError: … (credentials refused: HTTP 401)``; a wrapper's name comes after the cause."""
    return f"{cause} ({_plain(exc)})" if wrapped else f"{_plain(exc)} ({cause})"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 12 and current not in seen:
        if isinstance(current, KeyError) and seen:
            break  # exchangelib's cache look-ups leave KeyErrors in __context__: not a cause
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _where(chain: list[BaseException]) -> str:
    """`` (host:port)`` from urllib3's pool in the message, when it names one."""
    for e in chain:
        match = re.search(r"host='([^']+)', port=(\d+)", str(e))
        if match:
            return f" ({match.group(1)}:{match.group(2)})"
    return ""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    match = _HTTP_STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _root(exc: BaseException) -> str:
    """The innermost message of ``exc`` (``[Errno -2] Name or service not known``)."""
    inner = exc
    for _ in range(12):
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or isinstance(nxt, KeyError):
            break
        inner = nxt
    text = str(inner.args[-1] if isinstance(inner, ssl.SSLError) and inner.args else inner)
    return _one_line(text or type(inner).__name__)


def _plain(exc: BaseException) -> str:
    """``ClassName: first line`` without exchangelib's header dump."""
    lines = str(exc).splitlines()
    text = _one_line(lines[0].split(" headers: ")[0]) if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


__all__ = ["Cause", "classify", "error_code"]
