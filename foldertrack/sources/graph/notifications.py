"""The receiving end of Graph change notifications: answer the validation handshake, check
``clientState``, turn each notification into a trigger, acknowledge at once with 202.

https://learn.microsoft.com/graph/change-notifications-delivery-webhooks. Graph needs the token echoed
(``text/plain``, 200) within 10 s and a 2xx for notifications within 3 s, so the handler never does
work itself: ``on_change(subscription_id, change_type, message_id)`` and
``on_lifecycle(subscription_id, event)`` must only enqueue (a notification is a trigger for a delta
catch-up, nothing more). ``client_state`` is the expected secret, or a check
``(subscription id, clientState) -> True | False | None`` (None: a subscription we do not know, e.g. one a
previous process made: acknowledged, ignored, logged once). A notification whose ``clientState`` does not
match is dropped and counted. The listener speaks plain HTTP on a local port; TLS is terminated by the
public proxy.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
MAX_UNKNOWN_LOGGED = 1000  # subscription ids remembered so an unknown one is logged once
ChangeHandler = Callable[[str, str, str], None]
LifecycleHandler = Callable[[str, str], None]
StateCheck = Callable[[str, str], "bool | None"]  # (subscription id, clientState) -> ok, wrong, unknown


class NotificationListener:
    """``with NotificationListener(client_state, on_change, on_lifecycle) as listener:`` serves
    ``listener.url`` until the block ends (threads joined on exit)."""

    def __init__(
        self,
        client_state: str | StateCheck,
        on_change: ChangeHandler,
        on_lifecycle: LifecycleHandler,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client_state = client_state
        self.on_change = on_change
        self.on_lifecycle = on_lifecycle
        self.rejected = 0
        self.unknown = 0  # notifications of subscriptions we do not know (acknowledged, ignored)
        self._unknown_ids: set[str] = set()
        self.validations = 0
        self._server = _Server((host, port), _Handler)
        self._server.listener = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/graph/notifications"

    def start(self) -> NotificationListener:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-notifications"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()  # idle keep-alive connections would hold their threads
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> NotificationListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, body: Any) -> None:
        values = body.get("value") if isinstance(body, dict) else None
        for entry in values if isinstance(values, list) else []:
            if not isinstance(entry, dict):
                continue
            sub_id = str(entry.get("subscriptionId") or "")
            verdict = self._check(sub_id, entry.get("clientState"))
            if verdict is None:
                self._ignore_unknown(sub_id)
                continue
            if not verdict:
                self.rejected += 1
                log.warning("graph notification with a wrong clientState dropped")
                continue
            try:
                if entry.get("lifecycleEvent"):
                    self.on_lifecycle(sub_id, str(entry["lifecycleEvent"]))
                else:
                    data = entry.get("resourceData") if isinstance(entry.get("resourceData"), dict) else {}
                    self.on_change(sub_id, str(entry.get("changeType") or ""), str(data.get("id") or ""))
            except Exception:  # one bad handler call must not lose the rest of the batch
                log.exception("graph notification handler failed")

    def _check(self, sub_id: str, state: Any) -> bool | None:
        if not isinstance(state, str):
            return False
        if callable(self.client_state):
            return self.client_state(sub_id, state)
        return hmac.compare_digest(state.encode("utf-8"), self.client_state.encode("utf-8"))

    def _ignore_unknown(self, sub_id: str) -> None:
        """A subscription we do not know (an earlier process's, or one just deleted): no data is logged."""
        self.unknown += 1
        if sub_id in self._unknown_ids or len(self._unknown_ids) >= MAX_UNKNOWN_LOGGED:
            return
        self._unknown_ids.add(sub_id)
        log.info("graph notification for unknown subscription %.64r ignored", sub_id)


class _Server(ThreadingHTTPServer):
    """Joins its request threads on close, after shutting the connections they may be idling on."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, handler)

    def get_request(self):  # type: ignore[override]
        sock, addr = super().get_request()
        with self._lock:
            self._connections.add(sock)
        return sock, addr

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        self.close_connections()
        super().server_close()

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("graph notifications: " + format, *args)

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        listener: NotificationListener = self.server.listener  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._reply(413)
            return
        raw = self.rfile.read(length)
        token = dict(parse_qsl(urlsplit(self.path).query)).get("validationToken")
        if token is not None:  # the handshake: echo the (decoded) token, nothing else
            listener.validations += 1
            self._reply(200, token.encode("utf-8"))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._reply(400)
            return
        self._reply(202)
        listener.handle(body)
