"""Many mailboxes in one watcher process: start-up, memory, idle CPU, a safety-net round, tracking still
working (a script, no assertions).

    python bench/scale.py [--mailboxes 1000] [--folders 5] [--idle 30] [--sample 50] [--in-process] [--quick]

The simulator runs in a child process, so the RSS and CPU printed are the watcher process's own (this
process: watcher + harness + SQLite; the activity poller only runs during the moves at the end).
Start-up: until ``watcher.ready`` (every mailbox resolved and subscribed), then until idle (the first
catch-up sync of every folder done). Idle CPU: ``time.process_time()`` over ``--idle`` seconds of wall
time with nothing happening. Safety net: the periodic re-sync of every folder and hierarchy that runs
every ``safety_sync_interval`` (900 s by default), triggered here for every mailbox at once to show its
cost, amortised, and the worst case for moves made meanwhile (the timer itself spreads the mailboxes'
rounds over half to one and a half intervals, so they do not pile up like this).
Targets (DESIGN "Quality bars"): under 500 MB RSS, under 5 % CPU when idle.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import Counter

from _common import (
    FOLDER,
    ActivityPoller,
    Move,
    add_common_arguments,
    address,
    configure_logs,
    cpu_label,
    latency_line,
    load,
    machine,
    peak_rss_mb,
    poisson_offsets,
    records_csv,
    rss_mb,
    rules_yaml,
    sim_object,
    simulator,
    verdict,
)

from foldertrack.testing.harness import USER_PASSWORD, Harness
from foldertrack.watch.events import FolderChanged, HierarchyChanged

RSS_TARGET_MB = 500
IDLE_CPU_TARGET = 5.0
SAFETY_SYNC_INTERVAL = 900.0


def requests_delta(before: dict, after: dict) -> str:
    ops = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return ", ".join(f"{k} {v}" for k, v in sorted(ops.items()) if v) or "none"


def sample_moves(sample, staged, n, args, rng) -> list[Move]:
    """The ``n``-th staged mail of each sampled mailbox into a random tracked folder, 5 moves per second."""
    offsets = poisson_offsets(len(sample), 5.0, args.seed + n)
    return [
        Move(offset, a, staged[a][n][0], FOLDER.format(rng.randrange(args.folders)), staged[a][n][1])
        for offset, a in zip(offsets, sample, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument("--sample", type=int, default=50, help="mailboxes that get one move each at the end")
    add_common_arguments(parser, quick_help="200 mailboxes, 10 s idle, 20 moves")
    args = parser.parse_args()
    if args.quick:
        args.mailboxes, args.idle, args.sample = 200, 10.0, 20
    configure_logs(args.verbose)
    print(machine())
    print(
        f"scale: {args.mailboxes} mailboxes x {args.folders} tracked folders in one watcher, {args.workers} "
        f"workers, simulator {'in this process' if args.in_process else 'in a child process'}"
    )
    rng = random.Random(args.seed)
    addresses = [address(n) for n in range(args.mailboxes)]
    sample = rng.sample(addresses, min(args.sample, len(addresses)))
    started = time.monotonic()
    figures: dict[str, float] = {}
    with simulator(args.in_process) as driver, tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        t0 = time.monotonic()
        staged = driver.setup(addresses, args.folders, dict.fromkeys(sample, 2), USER_PASSWORD, tag="scale")
        print(f"simulator set up in {time.monotonic() - t0:.1f} s")
        with Harness(tmp, simulator=sim_object(driver), workers=args.workers) as h:
            h.import_records(records_csv(args.folders))
            h.write_rules(rules_yaml(addresses, args.folders))
            base_rss = rss_mb()
            requests0 = driver.stats()["requests"]
            cpu0, t0 = time.process_time(), time.monotonic()
            h.start_watcher(ready_timeout=1800)
            figures["ready"] = time.monotonic() - t0
            if not h.watcher.wait_idle(1800):
                print("  watcher did not become idle within 30 min")
            figures["idle_after"] = time.monotonic() - t0
            startup_cpu = time.process_time() - cpu0
            streams = driver.stats()["open_streams"]
            modes = Counter(s.mode for s in h.watcher.mailbox_states())
            print(
                f"\nstart-up: all {args.mailboxes} mailboxes subscribed (ready) after {figures['ready']:.1f} s; "
                f"first catch-up of all {args.mailboxes * args.folders} folders done after "
                f"{figures['idle_after']:.1f} s"
            )
            print(
                f"  {cpu_label(driver)} {startup_cpu:.1f} s; modes {dict(modes)}; {streams} streaming connection(s) open"
            )
            print(f"  EWS requests: {requests_delta(requests0, driver.stats()['requests'])}")
            figures["rss_start"] = rss_mb()
            print(
                f"  RSS {figures['rss_start']:.0f} MB (process before the watcher started: {base_rss:.0f} MB), "
                f"{threading.active_count()} threads"
            )

            # idle
            time.sleep(2)
            requests0 = driver.stats()["requests"]
            sim_cpu0 = driver.cpu_seconds()
            cpu0, t0 = time.process_time(), time.monotonic()
            time.sleep(args.idle)
            wall = time.monotonic() - t0
            figures["idle_cpu"] = (time.process_time() - cpu0) / wall * 100
            sim_cpu = (driver.cpu_seconds() - sim_cpu0) / wall * 100
            figures["rss_idle"] = rss_mb()
            print(
                f"\nidle for {wall:.0f} s: {cpu_label(driver)} {figures['idle_cpu']:.2f} % of one core"
                + ("" if args.in_process else f" (simulator process {sim_cpu:.2f} %)")
                + f", RSS {figures['rss_idle']:.0f} MB"
            )
            print(f"  EWS requests meanwhile: {requests_delta(requests0, driver.stats()['requests'])}")

            with ActivityPoller(h.database_url) as poller:
                # tracking still works: one move in each sampled mailbox, 5 per second
                done = driver.play(sample_moves(sample, staged, 0, args, rng))
                poller.wait_for([s for s, _, _ in done], 60)
                latencies = [poller.seen[s] - t for s, _, t in done if s in poller.seen]
                figures["p50"] = sorted(latencies)[len(latencies) // 2] if latencies else float("nan")
                print(
                    f"\n{len(done)} moves in {len(sample)} random mailboxes (5/s): {latency_line(latencies)}"
                )

                # one safety-net round of every mailbox at once (the worst case: the timer spreads them
                # out); the same moves again meanwhile
                requests0 = driver.stats()["requests"]
                cpu0, t0 = time.process_time(), time.monotonic()
                for state in h.watcher.mailbox_states():
                    h.watcher.dispatcher.put(HierarchyChanged(state.mailbox, "safety-net"))
                    for folder_id in list(state.targets):
                        h.watcher.dispatcher.put(FolderChanged(state.mailbox, folder_id, "safety-net"))
                done = driver.play(sample_moves(sample, staged, 1, args, rng))
                h.watcher.wait_idle(1800)
                wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
                poller.wait_for([s for s, _, _ in done], 60)
                during = [poller.seen[s] - t for s, _, t in done if s in poller.seen]
            figures["safety_amortised"] = cpu / SAFETY_SYNC_INTERVAL * 100
            figures["safety_p50"] = sorted(during)[len(during) // 2] if during else float("nan")
            figures["safety_max"] = max(during) if during else float("nan")
            print(
                f"\nsafety-net round (every hierarchy and folder re-synced): {wall:.1f} s, {cpu_label(driver)} "
                f"{cpu:.1f} s = {figures['safety_amortised']:.2f} % of one core averaged over the "
                f"{SAFETY_SYNC_INTERVAL:.0f} s interval; RSS {rss_mb():.0f} MB"
            )
            print(f"  EWS requests: {requests_delta(requests0, driver.stats()['requests'])}")
            print(f"  {len(done)} moves during the round: {latency_line(during)}")
            figures["rss_end"] = rss_mb()
            figures["rss_peak"] = peak_rss_mb()
            print(f"RSS at the end {figures['rss_end']:.0f} MB, peak {figures['rss_peak']:.0f} MB")
            t0 = time.monotonic()
        print(f"watcher stopped in {time.monotonic() - t0:.1f} s")
    print("\nsummary")
    print(f"  start-up: ready {figures['ready']:.1f} s, first catch-up done {figures['idle_after']:.1f} s")
    print(
        f"  RSS peak {figures['rss_peak']:.0f} MB (target < {RSS_TARGET_MB}): "
        + verdict(figures["rss_peak"] < RSS_TARGET_MB)
    )
    print(
        f"  idle CPU {figures['idle_cpu']:.2f} % (target < {IDLE_CPU_TARGET:g} %): "
        + verdict(figures["idle_cpu"] < IDLE_CPU_TARGET)
        + f"; with the safety net amortised {figures['idle_cpu'] + figures['safety_amortised']:.2f} %"
    )
    print(
        f"  move → activity p50 at this scale {figures['p50'] * 1000:.0f} ms; during a safety-net round "
        f"p50 {figures['safety_p50']:.1f} s, max {figures['safety_max']:.1f} s"
    )
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


if __name__ == "__main__":
    main()
