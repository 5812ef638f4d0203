"""``sim.crm.faults``: what a throttled, failing or unreachable Dataverse does to a client, on demand.

Checked for every ``/api/data`` request in this order: outage (connection reset, or 503 from the front
door), HTTP error status, service protection 429 (with ``Retry-After``), then the response delay. The
concurrency limit (52 concurrent requests per user, like Dataverse's default) is always on.
https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any


class _Budget:
    """On for the next N requests, or until a monotonic deadline; off when both are unset."""

    def __init__(self) -> None:
        self.requests = 0
        self.until = 0.0

    def set(self, requests: int | None, seconds: float | None) -> None:
        self.requests = int(requests or 0) if requests is not None or seconds else 1
        self.until = time.monotonic() + float(seconds) if seconds else 0.0

    def take(self) -> bool:
        if self.requests > 0:
            self.requests -= 1
            return True
        return self.until > time.monotonic()

    @property
    def active(self) -> bool:
        return self.requests > 0 or self.until > time.monotonic()


class Concurrency:
    """In-flight requests per user (the token's ``oid``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.peak = 0

    def enter(self, user: str, limit: int) -> bool:
        with self._lock:
            if self.in_flight[user] >= limit:
                return False
            self.in_flight[user] += 1
            self.peak = max(self.peak, self.in_flight[user])
            return True

    def leave(self, user: str) -> None:
        with self._lock:
            self.in_flight[user] -= 1


class RequestWindow:
    """Requests per user in a sliding window (Dataverse: 6,000 per 300 s per web server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.times: dict[str, deque[float]] = {}

    def admit(self, user: str, limit: int, window: float) -> float | None:
        """None when the request may run, else the seconds until the window has room (Retry-After)."""
        now = time.monotonic()
        with self._lock:
            times = self.times.setdefault(user, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                return times[0] + window - now
            times.append(now)
            return None


class DataverseFaults:
    """Every method is safe to call from any thread while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttle = _Budget()
        self._http = _Budget()
        self.retry_after = 1.0
        self.http_status = 503
        self.response_delay_ms = 0
        self.outage_mode: str | None = None  # "reset" or "503"
        self.concurrency_limit = 52
        self.expire_tokens_hook: Callable[[], int] | None = None
        self.injected: dict[str, int] = {}
        self.in_flight = Concurrency()
        self.window = RequestWindow()
        self.request_limit: int | None = 6000
        self.request_window = 300.0

    def throttle(
        self, requests: int | None = None, seconds: float | None = None, retry_after: float = 1.0
    ) -> None:
        """Answer the next ``requests`` (or all for ``seconds``) with 429 + ``Retry-After: retry_after``."""
        with self._lock:
            self.retry_after = float(retry_after)
            self._throttle.set(requests, seconds)

    def http_error(
        self, status: int = 503, requests: int | None = None, seconds: float | None = None
    ) -> None:
        with self._lock:
            self.http_status = int(status)
            self._http.set(requests, seconds)

    def slow_responses(self, ms: int) -> None:
        self.response_delay_ms = int(ms)

    def outage(self, on: bool = True, mode: str = "reset") -> None:
        """Dataverse unreachable: every request's connection is reset (``reset``) or gets 503 (``503``)."""
        if mode not in ("reset", "503"):
            raise ValueError(f"outage mode must be 'reset' or '503', not {mode!r}")
        self.outage_mode = mode if on else None

    def expire_tokens(self) -> int:
        """Make every bearer token issued so far invalid (clients get 401 until they fetch a new one)."""
        count = self.expire_tokens_hook() if self.expire_tokens_hook is not None else 0
        self._count("expire_tokens")
        return count

    def set_concurrency_limit(self, limit: int) -> None:
        self.concurrency_limit = int(limit)

    def set_request_limit(self, limit: int | None, window: float = 300.0) -> None:
        """Requests per user per ``window`` seconds before 429 (None: unlimited). Default 6,000 per 300 s."""
        self.request_limit = None if limit is None else int(limit)
        self.request_window = float(window)
        self.window = RequestWindow()

    def clear(self) -> None:
        with self._lock:
            self._throttle.set(0, None)
            self._http.set(0, None)
        self.response_delay_ms = 0
        self.outage_mode = None
        self.concurrency_limit = 52
        self.set_request_limit(6000, 300.0)

    # -- used by the server -----------------------------------------------------------------------
    def take_outage(self) -> str | None:
        """``reset`` or ``503`` while the CRM is down, else None."""
        mode = self.outage_mode
        if mode is not None:
            self._count("outage")
        return mode

    def take(self) -> tuple[str, float] | None:
        """The fault an authenticated request gets: ("http"|"throttle", detail) or None."""
        with self._lock:
            if self._http.take():
                fault: tuple[str, float] | None = ("http", self.http_status)
            elif self._throttle.take():
                fault = ("throttle", self.retry_after)
            else:
                fault = None
        if fault is not None:
            self._count(fault[0])
        return fault

    def _count(self, name: str) -> None:
        with self._lock:
            self.injected[name] = self.injected.get(name, 0) + 1

    def count_concurrency_refusal(self) -> None:
        self._count("concurrency")

    def count_rate_refusal(self) -> None:
        self._count("request_limit")

    def count_unauthorized(self) -> None:
        self._count("unauthorized")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "throttle": self._throttle.active,
                "retry_after": self.retry_after,
                "http_error": self._http.active,
                "http_status": self.http_status,
                "response_delay_ms": self.response_delay_ms,
                "outage": self.outage_mode,
                "concurrency_limit": self.concurrency_limit,
                "request_limit": self.request_limit,
                "request_window": self.request_window,
                "injected": dict(self.injected),
            }

    def apply(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The control endpoint's JSON, e.g. ``{"target": "crm", "action": "throttle", "requests": 3}``."""
        actions: dict[str, Callable[[], object]] = {
            "throttle": lambda: self.throttle(
                spec.get("requests"), spec.get("seconds"), float(spec.get("retry_after", 1))
            ),
            "http_error": lambda: self.http_error(
                int(spec.get("status", 503)), spec.get("requests"), spec.get("seconds")
            ),
            "slow_responses": lambda: self.slow_responses(int(spec["ms"])),
            "outage": lambda: self.outage(bool(spec.get("on", True)), str(spec.get("mode", "reset"))),
            "expire_tokens": lambda: self.expire_tokens(),
            "concurrency_limit": lambda: self.set_concurrency_limit(int(spec["limit"])),
            "request_limit": lambda: self.set_request_limit(
                None if spec.get("limit") is None else int(spec["limit"]), float(spec.get("window", 300))
            ),
            "clear": lambda: self.clear(),
        }
        action = spec.get("action")
        if action not in actions:
            raise ValueError(f"unknown crm action {action!r}; known: {', '.join(sorted(actions))}")
        actions[action]()
        return self.snapshot()
