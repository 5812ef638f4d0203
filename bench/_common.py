"""Shared pieces of the watcher benchmarks: the machine, the simulator (in a child process or in-process),
the rules for N mailboxes x M folders, an activity poller and percentiles.

By default the simulator runs in a child process, like a real Exchange server on the other end of the
wire: the watcher then has this process (and its GIL) to itself, and its CPU and RSS are its own.
``--in-process`` runs the simulator inside the benchmark process instead (as the tests and the demo do).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import random
import resource
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FOLDER = "Inbox/Customers/Customer {}"
DOMAIN = "bench.example"


# -- the machine -------------------------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The options every benchmark script has: folders, workers, where the simulator runs, seed, logs."""
    parser.add_argument("--folders", type=int, default=5, help="tracked folders per mailbox")
    parser.add_argument("--workers", type=int, default=4, help="sync workers (WatchOptions.workers)")
    parser.add_argument("--in-process", action="store_true", help="run the simulator in this process")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="show the watcher's warnings")


def machine() -> str:
    """CPU model, cores, Python and OS, for the header of every benchmark's output."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {model}, {cores} core(s), Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}; {load()}"
    )


def load() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    return f"load average {os.getloadavg()[0]:.2f}"


def rss_mb() -> float:
    """Current resident set size of this process in MB (VmRSS)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- figures -----------------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_line(values: Sequence[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "no samples"
    return (
        f"p50 {percentile(ordered, 50) * 1000:6.0f} ms  p95 {percentile(ordered, 95) * 1000:6.0f} ms  "
        f"p99 {percentile(ordered, 99) * 1000:6.0f} ms  max {ordered[-1] * 1000:6.0f} ms  (n={len(ordered)})"
    )


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


# -- names -------------------------------------------------------------------------------------------------


def address(n: int) -> str:
    return f"user{n:04d}@{DOMAIN}"


def rules_yaml(addresses: Sequence[str], folders: int) -> str:
    lines = ["mailboxes:", "  - addresses:"]
    lines += [f"      - {a}" for a in addresses]
    lines.append("    folders:")
    lines += [f"      {FOLDER.format(f)}: account:acc-{f}" for f in range(folders)]
    return "\n".join(lines) + "\n"


def records_csv(folders: int) -> str:
    rows = ["type,id,name,number,emails"]
    rows += [f"account,acc-{f},Customer {f},N-{f}," for f in range(folders)]
    return "\n".join(rows) + "\n"


# -- the simulator side ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """Move ``item_id`` of ``mailbox`` into ``folder`` at ``offset`` seconds after the schedule starts."""

    offset: float
    mailbox: str
    item_id: str
    folder: str
    subject: str


class SimDriver:
    """Runs where the simulator runs: sets mailboxes up, stages mails and plays moves on a schedule."""

    def __init__(self, heartbeat: float = 30.0):
        from foldertrack.simulator import Simulator

        self.sim = Simulator(host="127.0.0.1", port=0, heartbeat=heartbeat).start()
        self.url = self.sim.url

    def add_service_account(self, address: str, password: str, impersonation: bool = True) -> None:
        self.sim.add_service_account(address, password=password, impersonation=impersonation)

    def setup(
        self, addresses: Sequence[str], folders: int, mails: dict[str, int], password: str, tag: str = "bench"
    ) -> dict[str, list[tuple[str, str]]]:
        """Create the mailboxes and folders; deliver ``mails[address]`` mails into each Inbox.
        Returns address → [(item id, subject)]."""
        for a in addresses:
            mb = self.sim.add_mailbox(a, password=password)
            for f in range(folders):
                mb.create_folder(FOLDER.format(f))
        return self.stage(mails, tag=tag)

    def stage(self, mails: dict[str, int], tag: str = "bench") -> dict[str, list[tuple[str, str]]]:
        """Deliver ``mails[address]`` mails into each Inbox (not tracked); returns address → [(id, subject)]."""
        from foldertrack.simulator import MailSpec

        staged: dict[str, list[tuple[str, str]]] = {}
        for a, count in mails.items():
            local = a.split("@")[0]
            out = staged.setdefault(a, [])
            for n in range(count):
                subject = f"{tag} {local} #{n}"
                mail = MailSpec(
                    subject=subject,
                    sender=f"customer{n % 7}@contoso.example",
                    to=[a],
                    body=f"{subject}: the figures we discussed.",
                    message_id=f"<{tag}-{local}-{n}@contoso.example>",
                )
                out.append((self.sim.deliver(a, mail, folder="Inbox"), subject))
        return staged

    def play(self, moves: Sequence[Move]) -> list[tuple[str, float, float]]:
        """Play the moves on their schedule; returns (subject, wall time before, wall time after) per move."""
        done: list[tuple[str, float, float]] = []
        start = time.monotonic()
        for move in sorted(moves, key=lambda m: m.offset):
            wait = start + move.offset - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            before = time.time()
            self.sim.mailbox(move.mailbox).move_item(move.item_id, move.folder)
            done.append((move.subject, before, time.time()))
        return done

    def fault(self, action: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.sim.faults, action)(*args, **kwargs)

    def graph_app(self) -> tuple[str, str]:
        """Register the demo app for Graph; (HTTPS base URL, CA file) (bench/_graph.py)."""
        from _graph import register_app

        return register_app(self.sim)

    def stats(self) -> dict[str, Any]:
        return self.sim.stats.snapshot()

    def cpu_seconds(self) -> float:
        return time.process_time()

    def rss_mb(self) -> float:
        return rss_mb()

    def stop(self) -> None:
        self.sim.stop()


def _serve(conn, kwargs: dict[str, Any]) -> None:
    """Child process: a SimDriver obeying (method, args, kwargs) messages until "stop"."""
    driver = SimDriver(**kwargs)
    conn.send(driver.url)
    while True:
        name, args, kw = conn.recv()
        if name == "stop":
            driver.stop()
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(driver, name)(*args, **kw)))
        except Exception as exc:  # report it to the benchmark, keep serving
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class RemoteSim:
    """A SimDriver in a child process; method calls go over a pipe. Harness only needs ``url`` and
    ``add_service_account``, so it can be passed as ``Harness(simulator=...)``."""

    def __init__(self, **kwargs: Any):
        self._conn, child = mp.Pipe()
        self._lock = threading.Lock()
        self._proc = mp.get_context("spawn").Process(target=_serve, args=(child, kwargs), daemon=True)
        self._proc.start()
        self.url = self._conn.recv()
        self.pid = self._proc.pid

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((name, args, kwargs))
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"simulator process: {name}: {value}")
        return value

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call("stop")
        self._proc.join(10)


@contextlib.contextmanager
def simulator(in_process: bool, **kwargs: Any) -> Iterator[Any]:
    """A SimDriver (in-process) or RemoteSim (child process), stopped on exit."""
    driver = SimDriver(**kwargs) if in_process else RemoteSim(**kwargs)
    try:
        yield driver
    finally:
        driver.stop()


def cpu_label(driver: Any) -> str:
    """What this process's CPU time measures: the watcher alone, or the watcher and the simulator."""
    return "watcher + simulator CPU" if isinstance(driver, SimDriver) else "watcher CPU"


def sim_object(driver: Any) -> Any:
    """What to pass as ``Harness(simulator=...)``."""
    return driver.sim if isinstance(driver, SimDriver) else driver


# -- observing the watcher -------------------------------------------------------------------------------


class SyncTimes:
    """A ``WatchObserver`` that keeps each catch-up's duration and trigger age (the time from the first
    trigger it served, e.g. a notification or a poll tick, to its commit); other hooks are no-ops."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (duration, trigger age)

    def take(self) -> list[tuple[float, float]]:
        samples, self.samples = self.samples, []
        return samples

    def sync_finished(self, mailbox, folder_path, seconds, result, trigger_age) -> None:
        self.samples.append((seconds, trigger_age))

    def events_received(self, mailbox, count) -> None:
        pass

    def error(self, mailbox, operation, code) -> None:
        pass

    def mode_changed(self, mailbox, old, new) -> None:
        pass

    def __getattr__(self, name: str):
        """Hooks added to WatchObserver later (backfilled, delivered, …) are ignored too."""
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


# -- observing the database --------------------------------------------------------------------------------


class ActivityPoller:
    """A thread reading new ``activities`` rows every ``interval`` seconds straight from SQLite (or
    PostgreSQL): records the wall time each subject was first seen (visible = committed) and its
    ``tracked_at``. ``table`` names another table with ``subject`` and ``tracked_at`` (the baseline's)."""

    def __init__(self, database_url: str, interval: float = 0.005, table: str = "activities"):
        self.url = database_url
        self.path = database_url.removeprefix("sqlite:///")
        self.table = table
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.tracked_at: dict[str, float] = {}
        self._last_rowid = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)
        self.polls = 0

    def __enter__(self) -> ActivityPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        if self.url.startswith("postgresql"):
            self._run_postgres()
            return
        db = sqlite3.connect(self.path, timeout=30)
        try:
            while not self._stop.wait(self.interval):
                rows = db.execute(
                    f"SELECT rowid, subject, tracked_at FROM {self.table} WHERE rowid > ? ORDER BY rowid",
                    (self._last_rowid,),
                ).fetchall()
                now = time.time()
                self.polls += 1
                for rowid, subject, tracked_at in rows:
                    self._last_rowid = max(self._last_rowid, rowid)
                    self.seen.setdefault(subject, now)
                    self.tracked_at.setdefault(subject, _wall(tracked_at))
        finally:
            db.close()

    def _run_postgres(self) -> None:
        """PostgreSQL has no rowid: read the rows stamped in the last seconds before the newest seen
        (``tracked_at`` is stamped before the commit, so a row can become visible a little out of order)."""
        import psycopg

        db = psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        since = datetime(1970, 1, 1, tzinfo=UTC)
        try:
            while not self._stop.wait(self.interval):
                rows = db.execute(
                    f"SELECT subject, tracked_at FROM {self.table} WHERE tracked_at >= %s",
                    (since - timedelta(seconds=2),),
                ).fetchall()
                now = time.time()
                self.polls += 1
                for subject, tracked_at in rows:
                    since = max(since, tracked_at)
                    self.seen.setdefault(subject, now)
                    self.tracked_at.setdefault(subject, _wall(tracked_at))
        finally:
            db.close()

    def wait_for(self, subjects: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s in self.seen for s in subjects):
                return True
            time.sleep(0.01)
        return all(s in self.seen for s in subjects)


def _wall(value: Any) -> float:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def poisson_offsets(count: int, rate: float, seed: int) -> list[float]:
    """``count`` arrival times of a Poisson process with ``rate`` arrivals per second."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def configure_logs(verbose: bool) -> None:
    """Errors only, or warnings too with ``--verbose`` (a forced fallback logs a line per mailbox)."""
    import logging

    logging.basicConfig(
        level=logging.WARNING if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
