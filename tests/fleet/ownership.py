"""Continuous ownership checks: sample what each keeper claims to own every few milliseconds and turn the
samples into intervals that lie *inside* the true ones (start after the first sample, end before the last),
so any overlap found between two instances is a real double ownership, never a sampling artefact.

``time.monotonic()`` is CLOCK_MONOTONIC on Linux, shared by all processes of the machine, so intervals
from child processes and threads compare directly.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

TICK = 0.05  # a killed child's open ownerships end at its last tick


@dataclass(frozen=True)
class Interval:
    instance: str
    mailbox: str
    epoch: int
    start: float
    end: float


class OwnershipSampler:
    """Samples ``owned()`` of one keeper on a thread; intervals go to ``intervals`` and, if given, as JSON
    lines to ``sink`` (a child process's report, complete up to its last sample even after ``kill -9``)."""

    def __init__(
        self,
        instance: str,
        owned: Callable[[], dict[str, int]],
        *,
        period: float = 0.002,
        sink: IO[str] | None = None,
    ) -> None:
        self.instance = instance
        self._owned = owned
        self._period = period
        self._sink = sink
        self._open: dict[tuple[str, int], tuple[float, float]] = {}  # (mailbox, epoch) -> (start, last seen)
        self.intervals: list[Interval] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{instance}", daemon=True)

    def start(self) -> OwnershipSampler:
        self._thread.start()
        return self

    def stop(self) -> list[Interval]:
        self._stop.set()
        self._thread.join()
        for key in list(self._open):
            self._close(key)
        return self.intervals

    def _run(self) -> None:
        last_tick = 0.0
        while not self._stop.is_set():
            before = time.monotonic()
            now_owned = set(self._owned().items())
            after = time.monotonic()
            for key in list(self._open):
                if key not in now_owned:
                    self._close(key)
            for key in now_owned:
                if key in self._open:
                    self._open[key] = (self._open[key][0], before)
                else:
                    self._open[key] = (after, after)
                    self._emit({"ev": "own", "m": key[0], "e": key[1], "t": after})
            if self._open and before - last_tick >= TICK:  # "everything open was still owned at t"
                self._emit({"ev": "tick", "t": before})
                last_tick = before
            self._stop.wait(self._period)

    def _close(self, key: tuple[str, int]) -> None:
        start, last = self._open.pop(key)
        if last > start:
            interval = Interval(self.instance, key[0], key[1], start, last)
            self.intervals.append(interval)
            self._emit({"ev": "interval", **asdict(interval)})

    def _emit(self, record: dict) -> None:
        if self._sink is None:
            return
        self._sink.write(json.dumps(record) + "\n")
        self._sink.flush()


def read_report(path: Path, instance: str) -> list[Interval]:
    """A child's intervals; ownerships it never closed (it was killed) end at its last tick."""
    intervals: list[Interval] = []
    opened: dict[tuple[str, int], float] = {}
    last_tick = 0.0
    if not path.exists():
        return intervals
    for line in path.read_text().splitlines():
        if not line.endswith("}"):
            continue  # killed in the middle of a line
        record = json.loads(line)
        if record["ev"] == "own":
            opened[(record["m"], record["e"])] = record["t"]
        elif record["ev"] == "tick":
            last_tick = record["t"]
        elif record["ev"] == "interval":
            opened.pop((record["mailbox"], record["epoch"]), None)
            intervals.append(Interval(**{k: v for k, v in record.items() if k != "ev"}))
    intervals += [Interval(instance, m, e, t, last_tick) for (m, e), t in opened.items() if last_tick > t]
    return intervals


def double_ownerships(intervals: Iterable[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals where two different instances owned one mailbox at the same moment."""
    by_mailbox: dict[str, list[Interval]] = {}
    for interval in intervals:
        by_mailbox.setdefault(interval.mailbox, []).append(interval)
    clashes = []
    for items in by_mailbox.values():
        items.sort(key=lambda i: i.start)
        for n, a in enumerate(items):
            for b in items[n + 1 :]:
                if b.start >= a.end:
                    break
                if b.instance != a.instance:
                    clashes.append((a, b))
    return clashes


def epoch_regressions(intervals: Iterable[Interval]) -> list[tuple[Interval, Interval]]:
    """Consecutive ownerships of one mailbox whose epoch did not grow (a new claim must bump it)."""
    by_mailbox: dict[str, list[Interval]] = {}
    for interval in intervals:
        by_mailbox.setdefault(interval.mailbox, []).append(interval)
    bad = []
    for items in by_mailbox.values():
        items.sort(key=lambda i: i.start)
        for a, b in itertools.pairwise(items):
            same_claim = a.instance == b.instance and a.epoch == b.epoch
            if not same_claim and b.epoch <= a.epoch:
                bad.append((a, b))
    return bad
