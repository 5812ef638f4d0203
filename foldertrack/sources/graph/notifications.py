"""The receiving end of Graph change notifications: answer the validation handshake, check
``clientState``, turn each notification into a trigger, acknowledge at once with 202.

https://learn.microsoft.com/graph/change-notifications-delivery-webhooks. Graph needs the token echoed
(``text/plain``, 200) within 10 s and a 2xx for notifications within 3 s, so the handler never does
work itself: ``on_change(subscription_id, change_type, message_id)`` and
``on_lifecycle(subscription_id, event)`` must only enqueue (a notification is a trigger for a delta
catch-up, nothing more). A notification whose ``clientState`` is not the expected secret is dropped and
counted. The listener speaks plain HTTP on a local port; TLS is terminated by the public proxy.
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
ChangeHandler = Callable[[str, str, str], None]
LifecycleHandler = Callable[[str, str], None]


class NotificationListener:
    """``with NotificationListener(client_state, on_change, on_lifecycle) as listener:`` serves
    ``listener.url`` until the block ends (threads joined on exit)."""

    def __init__(
        self,
        client_state: str,
        on_change: ChangeHandler,
        on_lifecycle: LifecycleHandler,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client_state = client_state
        self.on_change = on_change
        self.on_lifecycle = on_lifecycle
        self.rejected = 0
        self.validations = 0
        self._server = _Server((host, port), _Handler)
        self._server.listener = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

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
            state = entry.get("clientState")
            if not isinstance(state, str) or not hmac.compare_digest(state, self.client_state):
                self.rejected += 1
                log.warning("graph notification with a wrong clientState dropped")
                continue
            sub_id = str(entry.get("subscriptionId") or "")
            try:
                if entry.get("lifecycleEvent"):
                    self.on_lifecycle(sub_id, str(entry["lifecycleEvent"]))
                else:
                    data = entry.get("resourceData") if isinstance(entry.get("resourceData"), dict) else {}
                    self.on_change(sub_id, str(entry.get("changeType") or ""), str(data.get("id") or ""))
            except Exception:  # one bad handler call must not lose the rest of the batch
                log.exception("graph notification handler failed")


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
