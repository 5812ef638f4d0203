"""``sim.stats``: what the simulated Exchange was asked, for tests and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """``sim.stats``: request counters by operation and by outcome, open streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.streams_open = 0
        self.streams_total = 0

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def count_operation(self, operation: str) -> None:
        with self._lock:
            self.requests[operation] += 1

    def open_streams(self, delta: int) -> None:
        with self._lock:
            self.streams_open += delta
            if delta > 0:
                self.streams_total += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "counters": dict(self.counters),
                "open_streams": self.streams_open,
                "streams_total": self.streams_total,
            }

    def __getitem__(self, operation: str) -> int:
        with self._lock:
            return self.requests[operation]
