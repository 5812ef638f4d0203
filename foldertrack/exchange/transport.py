"""The HTTP adapter under exchangelib: a total deadline and a size cap for every EWS response.

A read timeout only bounds the silence between two bytes, so a server that trickles a byte a second
holds a worker forever; and requests reads a whole answer into memory, so a 200 MB response costs a
gigabyte. For every non-streaming request this adapter therefore

- shuts the socket down when the request's total deadline passes (a timer; a blocked read then ends),
- reads the body itself and stops at ``max_response_size`` bytes (decoded),
- refuses a body that is not well-formed XML (truncated, garbage): exchangelib parses with lxml's
  ``recover=True``, which would turn half a response into half an item.

Each failure raises a subclass of a ``requests`` connection error, so exchangelib handles it like a broken
connection (the session is retired, the error surfaces as ``ErrorTimeoutExpired`` with ours as its
``__context__``): an error, never data. Streaming requests (``GetStreamingEvents``) pass through: the
stream's own stall detection watches them.

The requests in flight are known per thread, so :func:`abort_requests` lets the supervisor cut the
connection of a worker whose work is stuck.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass

import requests
from exchangelib.protocol import NoVerifyHTTPAdapter
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, HTTPError, ProtocolError, ReadTimeoutError

READ_CHUNK = 64 * 1024


class ResponseDeadlineExceeded(requests.exceptions.Timeout):
    """The server did not finish its answer within ``exchange.request_timeout``."""


class UnusableResponse(requests.exceptions.ChunkedEncodingError):
    """The answer arrived but cannot be used; never parsed into data."""


class ResponseTooLarge(UnusableResponse):
    """The answer is larger than ``exchange.max_response_size``."""


class MalformedResponse(UnusableResponse):
    """The answer is not well-formed XML (truncated, or garbage)."""


@dataclass(frozen=True)
class Limits:
    """Process-wide, like exchangelib's adapter class: set by :class:`ExchangeConnector`."""

    deadline: float = 300.0
    max_bytes: int = 128 * 2**20


LIMITS = Limits()


def set_limits(deadline: float, max_bytes: int) -> None:
    global LIMITS
    LIMITS = Limits(deadline, max_bytes)


class _Call:
    """One request in flight: its connection (once it has one) and whether we cut it."""

    def __init__(self) -> None:
        self.conn: HTTPConnection | None = None
        self.aborted = False
        self.lock = threading.Lock()

    def abort(self) -> bool:
        with self.lock:
            self.aborted = True
            sock = getattr(self.conn, "sock", None)
        if sock is None:
            return False
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read; close() alone would not
        except OSError:
            return False
        return True


_LOCAL = threading.local()
_INFLIGHT: dict[int, _Call] = {}
_INFLIGHT_LOCK = threading.Lock()


def abort_requests(thread_id: int) -> bool:
    """Cut the EWS request thread ``thread_id`` is waiting for, if any (stuck-work recovery)."""
    with _INFLIGHT_LOCK:
        call = _INFLIGHT.get(thread_id)
    return call.abort() if call is not None else False


def _note_connection(conn: HTTPConnection) -> None:
    call: _Call | None = getattr(_LOCAL, "call", None)
    if call is not None:
        with call.lock:
            call.conn = conn


class _TrackedHTTPConnection(HTTPConnection):
    def request(self, *args, **kwargs):  # type: ignore[override]
        _note_connection(self)
        return super().request(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def request(self, *args, **kwargs):  # type: ignore[override]
        _note_connection(self)
        return super().request(*args, **kwargs)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _Guard:
    """Mixed into requests' adapters (exchangelib sets the class in ``BaseProtocol.HTTP_ADAPTER_CLS``)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[misc]
        self.poolmanager.pool_classes_by_scheme = {  # type: ignore[attr-defined]
            "http": _TrackedHTTPPool,
            "https": _TrackedHTTPSPool,
        }

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if stream:  # a GetStreamingEvents connection: watched by the stream's stall detection
            return super().send(request, stream, timeout, verify, cert, proxies)  # type: ignore[misc]
        limits = LIMITS
        call = _Call()
        ident = threading.get_ident()
        _LOCAL.call = call
        with _INFLIGHT_LOCK:
            _INFLIGHT[ident] = call
        timer = threading.Timer(limits.deadline, call.abort)
        timer.daemon = True
        timer.name = "foldertrack-request-deadline"
        timer.start()
        try:
            response = super().send(request, True, timeout, verify, cert, proxies)  # type: ignore[misc]
            try:
                response._content = _read_body(response, limits.max_bytes, call)
                response._content_consumed = True
                response.raw.release_conn()
                response.iter_content = _whole_body(response._content)  # type: ignore[method-assign]
            except BaseException:
                response.close()  # the connection is dropped, not returned to the pool half-read
                raise
        except requests.exceptions.RequestException as exc:
            if call.aborted and not isinstance(exc, ResponseDeadlineExceeded):
                raise ResponseDeadlineExceeded(_deadline_text(limits), request=request) from exc
            raise
        finally:
            timer.cancel()
            _LOCAL.call = None
            with _INFLIGHT_LOCK:
                if _INFLIGHT.get(ident) is call:
                    del _INFLIGHT[ident]
        if call.aborted:
            raise ResponseDeadlineExceeded(_deadline_text(limits), request=request)
        _check_xml(response)
        return response


def _whole_body(content: bytes):
    """exchangelib parses answers from ``iter_content()`` with its default ``chunk_size=1``: a Python-level
    step per byte (0.6 ms for a 3 KB answer). The body is in memory already: hand it over in one piece."""

    def iter_content(chunk_size: int | None = 1, decode_unicode: bool = False):
        return iter((content,) if content else ())

    return iter_content


def _deadline_text(limits: Limits) -> str:
    return f"no complete answer within the {limits.deadline:g}s request deadline (exchange.request_timeout)"


def _read_body(response: requests.Response, max_bytes: int, call: _Call) -> bytes:
    """The decoded body, at most ``max_bytes``; urllib3 errors as requests' (like ``Response.content``)."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.raw.stream(READ_CHUNK, decode_content=True):
            total += len(chunk)
            if total > max_bytes:
                raise ResponseTooLarge(
                    f"response larger than {max_bytes:,} bytes (exchange.max_response_size); cut off",
                    response=response,
                )
            chunks.append(chunk)
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except HTTPError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except OSError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    return b"".join(chunks)


#: What real Exchange servers send that XML 1.0 forbids (control characters, raw or as references);
#: lxml's recovering parser (exchangelib's) copes with them, so the well-formedness check ignores them.
_ILLEGAL_RAW = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ILLEGAL_REF = re.compile(
    rb"&#(?:x0*(?:[0-8bcef]|1[0-9a-f])|0*(?:[0-8]|1[124-9]|2[0-9]|3[01]));", re.IGNORECASE
)


def _check_xml(response: requests.Response) -> None:
    """A SOAP answer must be one complete, well-formed XML document."""
    content_type = (response.headers.get("Content-Type") or "").lower()
    body = response._content or b""
    if "xml" not in content_type or not body.strip():
        return  # not SOAP (a plain HTTP error page): exchangelib reports the status
    cleaned = _ILLEGAL_REF.sub(b"", _ILLEGAL_RAW.sub(b"", body))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, load_dtd=False)
    try:
        etree.fromstring(cleaned, parser)
    except etree.XMLSyntaxError as exc:
        response.close()
        raise MalformedResponse(
            f"response is not well-formed XML ({len(body):,} bytes): {exc}", response=response
        ) from None


class GuardedAdapter(_Guard, HTTPAdapter):
    """requests' adapter with a deadline, a size cap and an XML check."""


class GuardedNoVerifyAdapter(_Guard, NoVerifyHTTPAdapter):
    """The same without TLS certificate verification (``exchange.verify_tls = false``)."""


def response_problem(exc: BaseException | None) -> BaseException | None:
    """The deadline / size / malformed-XML error behind ``exc`` (exchangelib re-raises ours as
    ``ErrorTimeoutExpired`` with it as ``__context__``), else None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (ResponseDeadlineExceeded, UnusableResponse)):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
