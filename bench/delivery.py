"""Delivery into Dataverse: move → visible-in-CRM latency next to move → local activity latency, and
sustained delivery throughput under Dataverse's service protection limits (a script, no assertions).

    python bench/delivery.py [--mailboxes 10] [--folders 5] [--moves 300] [--rate 5] [--burst 1000]
                             [--limit 6000] [--window 300] [--sustained 2000] [--sustained-limit 400]
                             [--sustained-window 20] [--max-concurrency 8] [--in-process] [--quick]

Everything is real between the parts: the watcher (exchangelib against the simulator's EWS) commits the
local activity and its outbox entry; delivery workers send it with the Dataverse sink (MSAL client
credentials, requests over HTTPS verified with the simulator's CA) to the simulator's Dataverse Web API.
The simulator runs in a child process by default.

Phase 1 "latency": moves arrive as a Poisson process (``--rate`` per second). For each move, "local" = the
time a thread polling SQLite every 5 ms first sees the activity, "CRM" = the time a thread inside the
simulator process polling its CRM every 5 ms first sees the email row, both minus the time the move call
returned. Target (DESIGN "Quality bars"): CRM p50 within 50 ms of local p50.

Phase 2 "burst": ``--burst`` mails moved at once, with Dataverse's default limits (``--limit`` requests per
``--window`` seconds per user, 52 concurrent): emails/s from the first move to the last email in the CRM.

Phase 3 "sustained": ``--sustained`` mails moved at once under a request limit scaled to a short window
(default 400 per 20 s = Dataverse's 6,000 per 300 s rate, 20 requests/s, but reached within the run):
emails/s over the whole phase and after the first window (steady state), with the 429s seen.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from _common import (
    FOLDER,
    ActivityPoller,
    Move,
    RemoteSim,
    SimDriver,
    add_common_arguments,
    address,
    configure_logs,
    latency_line,
    load,
    machine,
    percentile,
    poisson_offsets,
    verdict,
)

from foldertrack.simulator.identity import DEMO_CLIENT_ID as CLIENT_ID
from foldertrack.simulator.identity import DEMO_CLIENT_SECRET as CLIENT_SECRET
from foldertrack.simulator.identity import DEMO_TENANT as TENANT
from foldertrack.testing.harness import USER_PASSWORD, Harness


class DataverseDriver(SimDriver):
    """The simulator side, plus its Dataverse: the app registration, the seeded accounts and a thread that
    notes the wall time each email row first appears (no HTTP request, so no effect on the limits)."""

    def __init__(self, heartbeat: float = 30.0):
        super().__init__(heartbeat=heartbeat)
        self.sim.identity.add_app(TENANT, CLIENT_ID, CLIENT_SECRET)
        self.seen: dict[str, float] = {}
        self._reported = 0
        self._order: list[str] = []
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._poll, name="bench-crm-poller", daemon=True)
        self._watch.start()

    def dataverse(self, folders: int) -> dict[str, Any]:
        """Seed one account per folder; what the watcher's ``[dataverse]`` section needs."""
        crm = self.sim.crm
        accounts = [crm.add_account(f"Customer {f}", f"N-{f}") for f in range(folders)]
        return {
            "url": self.sim.https_base,
            "ca_file": self.sim.ca_path,
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "accounts": accounts,
        }

    def _poll(self) -> None:
        crm = self.sim.crm
        known = 0
        while not self._stop.wait(0.005):
            with crm.lock:
                rows = crm.rows.get("email", {})
                if len(rows) == known:
                    continue
                fresh = list(rows.values())[known:]
                known = len(rows)
            now = time.time()
            for row in fresh:
                subject = str(row.get("subject"))
                if subject not in self.seen:
                    self.seen[subject] = now
                    self._order.append(subject)

    def crm_seen(self) -> dict[str, float]:
        """Subjects first seen in the CRM since the last call, with the wall time."""
        order = self._order[self._reported :]
        self._reported += len(order)
        return {s: self.seen[s] for s in order}

    def crm_limits(self, limit: int | None, window: float) -> None:
        self.sim.crm.faults.set_request_limit(limit, window)

    def crm_stats(self) -> dict[str, Any]:
        faults = self.sim.crm.faults
        return {
            "injected": dict(faults.injected),
            "peak": faults.in_flight.peak,
            "requests": dict(self.sim.crm.requests),
            "emails": len(self.sim.crm.rows.get("email", {})),
        }

    def stop(self) -> None:
        self._stop.set()
        self._watch.join(5)
        super().stop()


def _serve(conn, kwargs: dict[str, Any]) -> None:
    """Child process: a DataverseDriver obeying (method, args, kwargs) messages until "stop"."""
    driver = DataverseDriver(**kwargs)
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


class RemoteDataverse(RemoteSim):
    """A DataverseDriver in a child process."""

    def __init__(self, **kwargs: Any):
        import multiprocessing as mp

        self._conn, child = mp.Pipe()
        self._lock = threading.Lock()
        self._proc = mp.get_context("spawn").Process(target=_serve, args=(child, kwargs), daemon=True)
        self._proc.start()
        self.url = self._conn.recv()
        self.pid = self._proc.pid


class CrmPoller:
    """Collects the CRM's first-seen times from the driver (its own poller does the timing)."""

    def __init__(self, driver: Any):
        self.driver = driver
        self.seen: dict[str, float] = {}

    def wait_for(self, subjects: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        missing = set(subjects) - set(self.seen)
        while missing and time.monotonic() < deadline:
            self.seen.update(self.driver.crm_seen())
            missing -= set(self.seen)
            if missing:
                time.sleep(0.02)
        return not missing


def rules_yaml(addresses: Sequence[str], accounts: Sequence[str]) -> str:
    lines = ["mailboxes:", "  - addresses:", *(f"      - {a}" for a in addresses), "    folders:"]
    lines += [f"      {FOLDER.format(f)}: account:{guid}" for f, guid in enumerate(accounts)]
    return "\n".join(lines) + "\n"


def dataverse_config(info: dict[str, Any], max_concurrency: int) -> Any:
    from foldertrack.config import parse_config

    section = {k: info[k] for k in ("url", "ca_file", "tenant_id", "client_id")}
    section.update(authority=info["url"], max_concurrency=max_concurrency)
    return parse_config({"dataverse": section}, env={"FOLDERTRACK_DATAVERSE_CLIENT_SECRET": CLIENT_SECRET})


def plan(staged, order, offsets, folders, rng) -> list[Move]:
    """One move per offset: the next staged mail of the mailbox ``order`` names, into a random folder."""
    cursor = {a: 0 for a in staged}
    moves = []
    for offset, mailbox in zip(offsets, order, strict=True):
        item_id, subject = staged[mailbox][cursor[mailbox]]
        cursor[mailbox] += 1
        moves.append(Move(offset, mailbox, item_id, FOLDER.format(rng.randrange(folders)), subject))
    return moves


def latency_phase(driver, local, crm, moves) -> dict[str, float]:
    done = driver.play(moves)
    subjects = [s for s, _, _ in done]
    ok = local.wait_for(subjects, 60) and crm.wait_for(subjects, 60)
    local_ms = [local.seen[s] - after for s, _, after in done if s in local.seen]
    crm_ms = [crm.seen[s] - after for s, _, after in done if s in crm.seen]
    extra = [crm.seen[s] - local.seen[s] for s, _, _ in done if s in crm.seen and s in local.seen]
    print(f"\n[latency] {len(done)} moves over {done[-1][2] - done[0][1]:.1f} s")
    print(f"  move → local activity  {latency_line(local_ms)}")
    print(f"  move → CRM email       {latency_line(crm_ms)}")
    print(f"  local → CRM (per mail) {latency_line(extra)}")
    if not ok:
        print(f"  MISSING: {len(done) - len(crm_ms)} not in the CRM within 60 s")
    lo, hi = sorted(local_ms), sorted(crm_ms)
    return {
        "local_p50": percentile(lo, 50),
        "local_p99": percentile(lo, 99),
        "crm_p50": percentile(hi, 50),
        "crm_p99": percentile(hi, 99),
        "missing": len(done) - len(crm_ms),
    }


def throughput_phase(
    name, driver, local, crm, moves, window: float | None, timeout: float
) -> dict[str, float]:
    stats0 = driver.crm_stats()
    done = driver.play(moves)
    start = done[0][1]
    subjects = [s for s, _, _ in done]
    local.wait_for(subjects, timeout)
    tracked = max((local.seen[s] for s in subjects if s in local.seen), default=float("nan")) - start
    ok = crm.wait_for(subjects, timeout)
    times = sorted(crm.seen[s] for s in subjects if s in crm.seen)
    stats = driver.crm_stats()
    injected = {k: v - stats0["injected"].get(k, 0) for k, v in stats["injected"].items()}
    requests = sum(stats["requests"].values()) - sum(stats0["requests"].values())
    elapsed = (times[-1] - start) if times else float("nan")
    rate = len(times) / elapsed if times else 0.0
    print(f"\n[{name}] {len(done)} mails moved in {done[-1][2] - start:.2f} s")
    print(f"  tracked locally: all after {tracked:.1f} s ({len(subjects) / tracked:.0f} mails/s)")
    print(f"  in the CRM: {len(times)} after {elapsed:.1f} s → {rate:.1f} emails/s over the phase")
    steady = None
    if window and times and elapsed > 2 * window:
        later = [t for t in times if t >= start + window]
        steady = len(later) / (times[-1] - (start + window))
        print(f"  after the first {window:g} s window: {steady:.1f} emails/s (steady state)")
    refusals = {k: v for k, v in injected.items() if k in ("request_limit", "concurrency", "throttle") and v}
    print(
        f"  Dataverse requests {requests}; 429s: {sum(refusals.values())} {refusals or ''}; "
        f"peak concurrent requests {stats['peak']}"
    )
    if not ok:
        print(f"  MISSING: {len(done) - len(times)} not in the CRM within {timeout:.0f} s")
    return {"rate": rate, "steady": steady, "missing": len(done) - len(times)}


def stage_plan(driver, addresses, counts, tag) -> dict[str, list[tuple[str, str]]]:
    return driver.stage({a: counts[a] for a in addresses if counts.get(a)}, tag=tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=10)
    parser.add_argument("--moves", type=int, default=300, help="moves in the latency phase")
    parser.add_argument("--rate", type=float, default=5.0, help="moves per second in the latency phase")
    parser.add_argument("--burst", type=int, default=1000, help="mails moved at once (0: skip)")
    parser.add_argument("--limit", type=int, default=6000, help="requests per window per user")
    parser.add_argument("--window", type=float, default=300.0, help="seconds")
    parser.add_argument("--sustained", type=int, default=2000, help="mails moved at once (0: skip)")
    parser.add_argument("--sustained-limit", type=int, default=400)
    parser.add_argument("--sustained-window", type=float, default=20.0)
    parser.add_argument("--max-concurrency", type=int, default=8, help="dataverse.max_concurrency")
    parser.add_argument("--delivery-workers", type=int, default=8, help="delivery.workers")
    add_common_arguments(parser, quick_help="small sizes: 60 moves at 10/s, bursts of 200 and 300")
    args = parser.parse_args()
    if args.quick:
        args.moves, args.rate, args.burst, args.sustained = 60, 10.0, 200, 300
        args.sustained_limit, args.sustained_window = 100, 4.0
    configure_logs(args.verbose)
    # requests lets these override a session's CA; the sink passes its CA per request, but MSAL's
    # discovery must not be sent to another CA either
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    print(machine())
    print(
        f"delivery: {args.mailboxes} mailboxes x {args.folders} tracked folders, sink dataverse "
        f"(max_concurrency {args.max_concurrency}, delivery.workers {args.delivery_workers}), "
        f"simulator {'in this process' if args.in_process else 'in a child process'}"
    )
    rng = random.Random(args.seed)
    addresses = [address(n) for n in range(args.mailboxes)]
    latency_order = [rng.choice(addresses) for _ in range(args.moves)]
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    driver = DataverseDriver() if args.in_process else RemoteDataverse()
    try:
        with tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
            from collections import Counter

            from foldertrack.crm.connect import connect
            from foldertrack.crm.records_sync import RecordsSyncer
            from foldertrack.delivery.service import DeliveryOptions
            from foldertrack.sinks.dataverse import DataverseActivitySink

            counts = Counter(latency_order)
            staged = driver.setup(addresses, args.folders, dict(counts), USER_PASSWORD, tag="lat")
            info = driver.dataverse(args.folders)
            config = dataverse_config(info, args.max_concurrency)
            driver.crm_limits(args.limit, args.window)
            sim = driver.sim if isinstance(driver, DataverseDriver) else driver
            with Harness(tmp, simulator=sim, workers=args.workers) as h:
                client = connect(config)
                try:
                    RecordsSyncer(client, h.engine).sync()
                finally:
                    client.close()
                h.write_rules(rules_yaml(addresses, info["accounts"]))
                sink = DataverseActivitySink.create(config, h.engine)
                delivery = DeliveryOptions(workers=args.delivery_workers)
                h.start_watcher(sink=sink, delivery=delivery)
                h.settle(120)
                crm = CrmPoller(driver)
                with ActivityPoller(h.database_url) as local:
                    offsets = poisson_offsets(args.moves, args.rate, args.seed)
                    moves = plan(staged, latency_order, offsets, args.folders, rng)
                    results["latency"] = latency_phase(driver, local, crm, moves)
                    for name, count, limit, window in (
                        ("burst", args.burst, args.limit, args.window),
                        ("sustained", args.sustained, args.sustained_limit, args.sustained_window),
                    ):
                        if not count:
                            continue
                        order = [addresses[n % len(addresses)] for n in range(count)]
                        batch = stage_plan(driver, addresses, Counter(order), name)
                        driver.crm_limits(limit, window)
                        print(f"\n{name}: request limit {limit} per {window:g} s per user, 52 concurrent")
                        moves = plan(batch, order, [0.0] * count, args.folders, rng)
                        timeout = 60 + 2 * count * window / max(1, limit)
                        results[name] = throughput_phase(name, driver, local, crm, moves, window, timeout)
                h.stop_watcher()
    finally:
        driver.stop()
    print("\nsummary")
    lat = results["latency"]
    gap = lat["crm_p50"] - lat["local_p50"]
    print(
        f"  move → CRM p50 {lat['crm_p50'] * 1000:.0f} ms, p99 {lat['crm_p99'] * 1000:.0f} ms; move → local "
        f"p50 {lat['local_p50'] * 1000:.0f} ms, p99 {lat['local_p99'] * 1000:.0f} ms; CRM p50 - local p50 = "
        f"{gap * 1000:.0f} ms (target ≤ 50): " + verdict(gap <= 0.05 and not lat["missing"])
    )
    for name in ("burst", "sustained"):
        if name in results:
            r = results[name]
            print(
                f"  {name}: {r['rate']:.1f} emails/s over the phase"
                + (f", {r['steady']:.1f} emails/s after the first window" if r["steady"] else "")
                + (f"; {r['missing']:.0f} MISSING" if r["missing"] else "")
            )
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


if __name__ == "__main__":
    main()
