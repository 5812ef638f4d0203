"""Faults in the answer itself, for the requests whose answer mentions one mail: a poison item.

``sim.faults.responses.add("POISON", "soap_error")`` makes every ``GetItem`` answer that contains the text
``POISON`` (a subject, say) fail the way a real server's bad day does, while every other answer is normal,
so a batch that includes the mail fails as a whole and the same request without it succeeds.

Modes:

- ``soap_error``: HTTP 500 with a SOAP fault ``ErrorInternalServerError``;
- ``http_500``: HTTP 500 with a plain-text body (no SOAP at all);
- ``garbage``: HTTP 200 whose body is cut in the middle and followed by bytes that are not XML;
- ``truncated``: HTTP 200 with only the first half of the answer (Content-Length says so too);
- ``trickle``: HTTP 200, the right Content-Length, then one byte every ``interval`` seconds, never done in
  any useful time (a response that never ends);
- ``oversize``: the real answer with ``size`` more characters after the marker (a huge subject).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from foldertrack.simulator.soap import SoapFault, fault_envelope

MODES = ("soap_error", "http_500", "garbage", "truncated", "trickle", "oversize")


@dataclass
class ResponseRule:
    marker: bytes
    mode: str
    operation: str
    times: int | None  # answers still to spoil; None: all
    size: int
    interval: float


class ResponseFaults:
    """``sim.faults.responses``: safe to change from any thread while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[ResponseRule] = []
        self.spoiled: dict[str, int] = {}

    def add(
        self,
        marker: str,
        mode: str,
        *,
        operation: str = "GetItem",
        times: int | None = None,
        size: int = 1_000_000,
        interval: float = 0.5,
    ) -> None:
        """Spoil answers to ``operation`` that contain ``marker`` (``times`` of them; None: all)."""
        if mode not in MODES:
            raise ValueError(f"unknown response fault {mode!r}; known: {', '.join(MODES)}")
        if not marker:
            raise ValueError("a response fault needs a marker")
        with self._lock:
            self._rules.append(
                ResponseRule(marker.encode("utf-8"), mode, operation, times, int(size), float(interval))
            )

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"marker": r.marker.decode("utf-8", "replace"), "mode": r.mode, "operation": r.operation}
                for r in self._rules
            ]

    def _take(self, operation: str, body: bytes) -> ResponseRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.operation == operation and rule.marker in body:
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    self.spoiled[rule.mode] = self.spoiled.get(rule.mode, 0) + 1
                    return rule
        return None

    def intercept(self, handler: Any, operation: str, body: bytes, stopping: threading.Event) -> bool:
        """Called with a successful answer before it is sent; True when a fault answered instead."""
        rule = self._take(operation, body)
        if rule is None:
            return False
        if rule.mode == "soap_error":
            fault = SoapFault(
                "ErrorInternalServerError", "An internal server error occurred. The operation failed."
            )
            handler._send(500, fault_envelope(fault))
        elif rule.mode == "http_500":
            handler.close_connection = True
            handler._send(500, b"Internal Server Error", "text/plain")
        elif rule.mode == "garbage":
            handler._send(200, body[: len(body) // 2] + b"\x00<<&&\xff\xfe not xml >>")
        elif rule.mode == "truncated":
            handler._send(200, body[: len(body) // 2])
        elif rule.mode == "oversize":
            handler._send(200, body.replace(rule.marker, rule.marker + b"x" * rule.size, 1))
        else:
            _trickle(handler, body, rule.interval, stopping)
        return True


def _trickle(handler: Any, body: bytes, interval: float, stopping: threading.Event) -> None:
    """Headers at once, then a byte per ``interval``: read timeouts between bytes never fire."""
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "text/xml; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.flush()
        for index in range(len(body)):
            if stopping.wait(interval):
                return
            handler.wfile.write(body[index : index + 1])
            handler.wfile.flush()
    except OSError:  # the client gave up (its deadline) and closed the connection
        return
