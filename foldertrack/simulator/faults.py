"""Fault injection: what a flaky Exchange does to a client, on demand.

Request faults are checked in this order for every EWS request: connection reset, HTTP error status,
``ErrorServerBusy`` (a SOAP fault with ``BackOffMilliseconds``, as Exchange throttling sends it), then the
response delay. Stream faults act on open ``GetStreamingEvents`` connections.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from foldertrack.simulator.events import StreamWaker
from foldertrack.simulator.response_faults import ResponseFaults

if TYPE_CHECKING:
    from foldertrack.simulator.store import Store


@dataclass
class _Budget:
    """A fault that applies to the next N requests, or until a deadline (monotonic), or both unset = off."""

    requests: int = 0
    until: float = 0.0

    def take(self) -> bool:
        if self.requests > 0:
            self.requests -= 1
            return True
        return self.until > time.monotonic()

    def set(self, requests: int | None, seconds: float | None) -> None:
        self.requests = int(requests or 0)
        self.until = time.monotonic() + seconds if seconds else 0.0

    @property
    def active(self) -> bool:
        return self.requests > 0 or self.until > time.monotonic()


class Faults:
    """``sim.faults``: every method is safe to call from any thread while the server runs."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.streams: set[StreamWaker] = set()  # open GetStreamingEvents connections
        self.drop_every: float = 0.0
        self.streams_stalled = False
        self.streams_refused = 0  # HTTP status every GetStreamingEvents gets (0: off)
        self.notification_delay_ms = 0
        self.response_delay_ms = 0
        self.busy_backoff_ms = 0
        self.http_status = 503
        self._busy = _Budget()
        self._http = _Budget()
        self._reset = _Budget()
        self.injected: dict[str, int] = {}
        self.responses = ResponseFaults()  # poison answers: one mail's GetItem fails (H5, response_faults.py)

    # -- streams ----------------------------------------------------------------------------------
    def drop_streams(self) -> int:
        """Cut every open streaming connection now (no final chunk: the client sees a broken stream)."""
        wakers = list(self.streams)
        for waker in wakers:
            waker.close("dropped")
        self._count("drop_streams", len(wakers))
        return len(wakers)

    def drop_streams_every(self, seconds: float) -> None:
        """Cut each streaming connection once it has been open ``seconds`` (0 turns this off)."""
        self.drop_every = float(seconds)
        for waker in list(self.streams):
            waker.wake.set()

    def stall_streams(self, stalled: bool = True) -> None:
        """Keep streaming connections open but silent: no events, no keep-alives, no ``Closed``."""
        self.streams_stalled = stalled
        for waker in list(self.streams):
            waker.wake.set()

    def refuse_streams(self, status: int = 503) -> None:
        """Answer every ``GetStreamingEvents`` with HTTP ``status`` (0 turns this off): subscribing still
        works, but no stream ever opens, as behind a front end that rejects long-running requests."""
        self.streams_refused = int(status)

    def expire_subscriptions(self) -> int:
        """Forget every subscription (``ErrorSubscriptionNotFound`` from now on, also on open streams)."""
        with self._store.lock:
            count = self._store.expire_all()
        self._count("expire_subscriptions", count)
        return count

    def delay_notifications(self, ms: int) -> None:
        self.notification_delay_ms = int(ms)
        with self._store.lock:
            self._store.notification_delay = ms / 1000.0

    # -- requests ---------------------------------------------------------------------------------
    def server_busy(
        self, requests: int | None = None, seconds: float | None = None, backoff_ms: int = 1000
    ) -> None:
        with self._lock:
            self.busy_backoff_ms = int(backoff_ms)
            self._busy.set(requests if requests is not None or seconds else 1, seconds)

    def http_error(
        self, status: int = 503, requests: int | None = None, seconds: float | None = None
    ) -> None:
        with self._lock:
            self.http_status = int(status)
            self._http.set(requests if requests is not None or seconds else 1, seconds)

    def reset_connections(self, requests: int | None = None, seconds: float | None = None) -> None:
        with self._lock:
            self._reset.set(requests if requests is not None or seconds else 1, seconds)

    def slow_responses(self, ms: int) -> None:
        self.response_delay_ms = int(ms)

    def use_profile(self, name: str) -> None:
        """Switch the server profile (:mod:`.profiles`); the control endpoint's ``use_profile``."""
        from foldertrack.simulator.profiles import profile_named

        chosen = profile_named(name)
        with self._store.lock:
            self._store.profile = chosen

    def clear(self) -> None:
        """Turn every fault off (open stalled streams resume)."""
        with self._lock:
            self._busy.set(0, None)
            self._http.set(0, None)
            self._reset.set(0, None)
        self.response_delay_ms = 0
        self.drop_every = 0.0
        self.streams_refused = 0
        self.delay_notifications(0)
        self.stall_streams(False)
        self.responses.clear()

    # -- used by the server -----------------------------------------------------------------------
    def take_request_fault(self) -> tuple[str, int] | None:
        """The fault the next request gets: ("reset", 0), ("http", status), ("busy", backoff ms) or None."""
        with self._lock:
            if self._reset.take():
                fault: tuple[str, int] | None = ("reset", 0)
            elif self._http.take():
                fault = ("http", self.http_status)
            elif self._busy.take():
                fault = ("busy", self.busy_backoff_ms)
            else:
                fault = None
        if fault is not None:
            self._count(fault[0])
        return fault

    def take_stream_refusal(self) -> int:
        """The HTTP status a ``GetStreamingEvents`` request gets instead of a stream, or 0."""
        status = self.streams_refused
        if status:
            self._count("refuse_streams")
        return status

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.injected[name] = self.injected.get(name, 0) + n

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "server_busy": self._busy.active,
                "busy_backoff_ms": self.busy_backoff_ms,
                "http_error": self._http.active,
                "http_status": self.http_status,
                "reset_connections": self._reset.active,
                "drop_every": self.drop_every,
                "streams_stalled": self.streams_stalled,
                "streams_refused": self.streams_refused,
                "notification_delay_ms": self.notification_delay_ms,
                "response_delay_ms": self.response_delay_ms,
                "open_streams": len(self.streams),
                "spoiled_responses": self.responses.snapshot(),
                "profile": self._store.profile.name,
                "injected": dict(self.injected),
            }

    def apply(self, spec: dict) -> dict[str, object]:
        """The control endpoint's JSON: ``{"action": "server_busy", "requests": 3, "backoff_ms": 500}``."""
        actions = {
            "drop_streams": lambda: self.drop_streams(),
            "drop_streams_every": lambda: self.drop_streams_every(float(spec["seconds"])),
            "stall_streams": lambda: self.stall_streams(bool(spec.get("stalled", True))),
            "refuse_streams": lambda: self.refuse_streams(int(spec.get("status", 503))),
            "expire_subscriptions": lambda: self.expire_subscriptions(),
            "server_busy": lambda: self.server_busy(
                spec.get("requests"), spec.get("seconds"), int(spec.get("backoff_ms", 1000))
            ),
            "http_error": lambda: self.http_error(
                int(spec.get("status", 503)), spec.get("requests"), spec.get("seconds")
            ),
            "reset_connections": lambda: self.reset_connections(spec.get("requests"), spec.get("seconds")),
            "delay_notifications": lambda: self.delay_notifications(int(spec["ms"])),
            "slow_responses": lambda: self.slow_responses(int(spec["ms"])),
            "clear": lambda: self.clear(),
            "use_profile": lambda: self.use_profile(str(spec["name"])),
            "spoil_responses": lambda: self.responses.add(
                str(spec["marker"]),
                str(spec["mode"]),
                operation=str(spec.get("operation", "GetItem")),
                times=spec.get("times"),
                size=int(spec.get("size", 1_000_000)),
                interval=float(spec.get("interval", 0.5)),
            ),
        }
        action = spec.get("action")
        if action not in actions:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(actions))}")
        actions[action]()
        return self.snapshot()
