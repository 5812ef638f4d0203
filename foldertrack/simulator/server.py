"""The HTTP side: ``POST /EWS/Exchange.asmx`` (Basic auth, or OAuth2 bearer tokens from the simulator's
token endpoint; SOAP 1.1), chunked streaming, a loopback-only ``/control/faults`` endpoint, and a server
that tracks (and on stop joins) every thread it starts.

Bearer tokens are checked like Exchange Online does (:mod:`~foldertrack.simulator.bearer`; app-only tokens
also need an ``ExchangeImpersonation`` header) when a request starts: a stream already open outlives its
token, as on Exchange.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from foldertrack.simulator import routes
from foldertrack.simulator.bearer import BEARER_CHALLENGE, BearerRefused, check_bearer
from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops import SERVICES
from foldertrack.simulator.ops.base import Context, StreamingResponse
from foldertrack.simulator.profiles import VERSION_RANK, ResponseOptions, set_response_options
from foldertrack.simulator.soap import SoapFault, envelope, fault_envelope, parse_request, stream_envelope
from foldertrack.simulator.store import Principal
from foldertrack.simulator.validation import VALIDATOR

if TYPE_CHECKING:
    from foldertrack.simulator.simulator import Simulator

log = logging.getLogger(__name__)

EWS_PATH = "/ews/exchange.asmx"
CONTROL_PATH = "/control/faults"
MAX_BODY = 64 * 1024 * 1024
REALM = "foldertrack-simulator"


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], sim: Simulator):
        self.sim = sim
        self._track = threading.Lock()
        self.threads: set[threading.Thread] = set()
        self.connections: set[socket.socket] = set()
        super().__init__(address, EwsRequestHandler)

    def get_request(self):  # type: ignore[override]
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._track:
            self.connections.add(sock)
        return sock, addr

    def process_request(self, request, client_address):  # type: ignore[override]
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="ews-sim-connection",
            daemon=True,
        )
        with self._track:
            self.threads.add(thread)
        thread.start()

    def _serve_connection(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a broken connection must not print tracebacks
            log.debug("connection from %s ended with an error", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            with self._track:
                self.threads.discard(threading.current_thread())

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._track:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._track:
            conns = list(self.connections)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_threads(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._track:
                threads = list(self.threads)
            if not threads or time.monotonic() > deadline:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))


class EwsRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: SimHTTPServer
    _app_only = False  # the request came with an app-only bearer token (set by _authenticate)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def version_string(self) -> str:
        return self.server_version  # "Microsoft-IIS/10.0", no trailing space

    def _exchange_headers(self) -> dict[str, str]:
        """``request-id`` on every response; ``client-request-id`` echoed when the client asked for it."""
        headers = {"request-id": str(uuid.uuid4())}
        client_id = self.headers.get("client-request-id")
        if client_id and (self.headers.get("return-client-request-id") or "").strip().lower() == "true":
            headers["client-request-id"] = client_id
        return headers

    # -- plumbing ---------------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length)

    def _send(
        self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8", extra=None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-FEServer", "SIMULATOR")
        for key, value in {**self._exchange_headers(), **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        """Abort the TCP connection (RST) without answering."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if routes.handle(self, "GET"):  # token endpoint, Dataverse, CRM faults (simulator/routes.py)
            return
        if self.path.lower().split("?")[0] == CONTROL_PATH and self._loopback():
            self._send(200, json.dumps(self.server.sim.faults.snapshot()).encode(), "application/json")
        elif self.path.lower().split("?")[0] == EWS_PATH:
            self._send(405, b"Method not allowed", "text/plain")
        else:
            self._send(404, b"Not found", "text/plain")

    def do_POST(self) -> None:
        if routes.handle(self, "POST"):
            return
        path = self.path.lower().split("?")[0]
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(400, b"Bad request", "text/plain")
        elif path == EWS_PATH:
            self._ews(body)
        elif path == CONTROL_PATH:
            self._control(body)
        else:
            self._send(404, b"Not found", "text/plain")

    def do_PATCH(self) -> None:
        if not routes.handle(self, "PATCH"):
            self._send(405, b"Method not allowed", "text/plain")

    def do_PUT(self) -> None:
        if not routes.handle(self, "PUT"):
            self._send(405, b"Method not allowed", "text/plain")

    def do_DELETE(self) -> None:
        if not routes.handle(self, "DELETE"):
            self._send(405, b"Method not allowed", "text/plain")

    def _loopback(self) -> bool:
        return self.client_address[0] in ("127.0.0.1", "::1") or self.client_address[0].startswith("127.")

    def _control(self, body: bytes) -> None:
        if not self._loopback():
            self._send(403, b"control endpoint is loopback-only", "text/plain")
            return
        try:
            result = self.server.sim.faults.apply(json.loads(body or b"{}"))
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        self._send(200, json.dumps(result).encode(), "application/json")

    def _authenticate(self):
        """The caller (Basic auth or an app-only bearer token), None for no or wrong Basic credentials;
        raises :class:`BearerRefused` for a bearer token Exchange would refuse."""
        self._app_only = False
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self._bearer(value.strip())
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return self.server.sim.store.authenticate(user, password)

    def _bearer(self, token: str) -> Principal:
        """An app-only token of the simulator's token endpoint, checked as Exchange Online checks it
        (:func:`~foldertrack.simulator.bearer.check_bearer`)."""
        base = getattr(self.server, "base_url", "") or "http://{}:{}".format(*self.server.server_address[:2])
        principal = check_bearer(self.server.sim.identity, base, token)
        self._app_only = True
        return principal

    def _refuse_bearer(self, refusal: BearerRefused) -> None:
        self.send_response(refusal.status)
        if refusal.status == 401:
            self.send_header("WWW-Authenticate", BEARER_CHALLENGE)
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
        self.send_header("x-ms-diagnostics", refusal.diagnostics())
        self.send_header("X-FEServer", "SIMULATOR")
        for key, value in self._exchange_headers().items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _ews(self, body: bytes) -> None:
        sim = self.server.sim
        sim.stats.count("http_requests")
        try:
            principal = self._authenticate()
        except BearerRefused as refusal:
            sim.stats.count("unauthorized")
            self._refuse_bearer(refusal)
            return
        if principal is None:
            sim.stats.count("unauthorized")
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        fault = sim.faults.take_request_fault()
        if fault is not None and fault[0] == "reset":
            self._reset()
            return
        if fault is not None and fault[0] == "http":
            self._send(fault[1], f"Simulated HTTP {fault[1]}".encode(), "text/plain")
            return
        delay = sim.faults.response_delay_ms
        if delay:
            sim.stopping.wait(delay / 1000.0)
        if fault is not None:  # throttled before the request is even read, like Exchange's budget check
            busy = SoapFault(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                {"BackOffMilliseconds": str(fault[1])},
            )
            self._send(500, fault_envelope(busy))
            return
        try:
            profile = sim.store.profile
            request = parse_request(body, VALIDATOR.validate if profile.validate_requests else None)
            set_response_options(
                ResponseOptions(VERSION_RANK[request.request_version], request.milliseconds, profile)
            )
            sim.stats.count_operation(request.operation)
            refused = request.operation == "GetStreamingEvents" and sim.faults.take_stream_refusal()
            if refused:
                self._send(refused, f"Simulated HTTP {refused}".encode(), "text/plain")
                return
            handler_cls = SERVICES.get(request.operation)
            if handler_cls is None:
                raise SoapFault(
                    "ErrorInvalidOperation", f"The simulator does not implement {request.operation}."
                )
            mailbox = self._acting_mailbox(principal, request.impersonate)
            ctx = Context(sim.store, principal, mailbox, request, sim.faults, sim.stopping, sim.heartbeat)
            result = handler_cls(ctx).call(request.payload)
        except SoapFault as exc:
            sim.stats.count(f"fault:{exc.code}")
            self._send(500, fault_envelope(exc))
            return
        except EwsError as exc:
            sim.stats.count(f"fault:{exc.code}")
            self._send(500, fault_envelope(SoapFault(exc.code, exc.text, exc.message_xml)))
            return
        except Exception as exc:
            log.exception("simulator: unexpected error")
            self._send(
                500, fault_envelope(SoapFault("ErrorInternalServerError", f"{type(exc).__name__}: {exc}"))
            )
            return
        if isinstance(result, StreamingResponse):
            self._stream(result)
        else:
            sim.observe(result)
            body = envelope(result)
            if not sim.faults.responses.intercept(self, request.operation, body, sim.stopping):
                self._send(200, body)

    def _acting_mailbox(self, principal, impersonate: str | None):
        store = self.server.sim.store
        if impersonate is None and self._app_only:  # an app has no mailbox of its own
            raise SoapFault(
                "ErrorInvalidExchangeImpersonationHeaderData",
                "ExchangeImpersonation SOAP header must be present for this type of OAuth token.",
            )
        if impersonate is None:
            return principal.mailbox
        with store.lock:
            try:
                target = store.mailbox(impersonate)
            except EwsError as exc:
                raise SoapFault(exc.code, exc.text) from None
        if target is principal.mailbox:
            return target
        if not principal.can_impersonate:
            raise SoapFault(
                "ErrorImpersonateUserDenied",
                "The account does not have permission to impersonate the requested user.",
            )
        return target

    def _stream(self, result: StreamingResponse) -> None:
        sim = self.server.sim
        sim.stats.open_streams(+1)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-FEServer", "SIMULATOR")
            for key, value in self._exchange_headers().items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.flush()
            for chunk in result.chunks:
                sim.observe(chunk)
                data = stream_envelope(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            if result.drop:
                self._reset()
            else:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            sim.stats.open_streams(-1)
            if result.on_close is not None:
                result.on_close()
