"""A real webhook receiver on 127.0.0.1 for tests and the demo: verifies signatures, applies each
``Idempotency-Key`` once, records every request, and answers what a test scripts (429 with Retry-After,
500, 400, a slow answer).

It checks signatures with its own code (not the sink's), as a third-party receiver would, and validates
every body against the shipped JSON Schema, so a sink that sends anything else fails the test that uses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Answer", "ReceivedRequest", "WebhookReceiver", "webhook_receiver"]


@dataclass(frozen=True)
class Answer:
    """A scripted answer: status, extra headers, body (bytes or a JSON-able value), delay in seconds."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class WebhookReceiver:
    """``with WebhookReceiver(secret) as r:`` serves on ``r.url``; ``r.requests`` is everything received,
    ``r.applied`` the bodies applied once per idempotency key, ``r.state`` the activities by mail key."""

    def __init__(self, secret: str, *, tls: tuple[Path, Path] | None = None, tolerance: float = 300.0):
        self.secret = secret.encode("utf-8")
        self.tolerance = tolerance
        self.requests: list[ReceivedRequest] = []
        self.applied: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}
        self._answers: list[Answer] = []
        self._seen: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[Any] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.server_address[1]}/hooks/crm"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()  # releases handlers waiting out a scripted delay
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # kept-alive connections would keep their handler threads
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def answer(self, *answers: Answer) -> None:
        """Queue answers for the next requests, in order; after them the receiver applies normally."""
        with self._lock:
            self._answers.extend(answers)

    def signature_valid(self, header: str, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > self.tolerance:
            return False
        mac = hmac.new(self.secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, parts.get("v1", ""))

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[Answer, ReceivedRequest]:
        ok = self.signature_valid(headers.get("x-foldertrack-signature", ""), body)
        with self._lock:
            scripted = self._answers.pop(0) if self._answers else None
            if scripted is not None:
                answer = scripted
            elif not ok:
                answer = Answer(
                    401, body={"error": {"code": "bad_signature", "message": "signature mismatch"}}
                )
            else:
                answer = self._apply(headers.get("idempotency-key", ""), json.loads(body))
            record = ReceivedRequest(path, headers, body, ok, answer.status)
            self.requests.append(record)
        return answer, record

    def _apply(self, key: str, data: dict[str, Any]) -> Answer:
        """Exactly once per idempotency key; a repeat gets the first answer's status again."""
        if key in self._seen:  # replay the first answer, as Stripe-style receivers do
            return self._seen[key]
        status = 200
        if data["op"] == "upsert":
            status = 200 if data["key"] in self.state else 201
            self.state[data["key"]] = data["activity"]
        elif data["key"] not in self.state:
            status = 404
        elif data["op"] == "untrack":
            self.state[data["key"]] = {**self.state[data["key"]], "regarding": None, "state": "untracked"}
        else:
            del self.state[data["key"]]
        answer = Answer(status, body={"outcome": "created" if status == 201 else "updated"})
        self._seen[key] = answer
        self.applied.append(data)
        return answer

    def wait_delay(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with receiver._lock:
                receiver._connections.add(self.connection)

        def finish(self) -> None:
            with receiver._lock:
                receiver._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer, _ = receiver.handle(self.path, headers, body)
            if answer.delay:
                receiver.wait_delay(answer.delay)
            payload = answer.body
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload else b""
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if not isinstance(payload, bytes):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except OSError:
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A started receiver with secret ``whsec-test``; at teardown every body must match the JSON Schema."""
    import jsonschema

    from foldertrack.sinks.webhook import payload_schema

    with WebhookReceiver("whsec-test") as receiver:
        yield receiver
    validator = jsonschema.Draft202012Validator(payload_schema())
    problems = [
        f"request {n}: {error.message} at {list(error.absolute_path)}"
        for n, request in enumerate(receiver.requests)
        for error in validator.iter_errors(request.json)
    ]
    if problems:
        pytest.fail("webhook bodies not matching webhook.schema.json:\n" + "\n".join(problems[:10]))
