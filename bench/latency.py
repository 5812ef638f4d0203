"""Move → activity latency of the watcher, while streaming and while polling (a script, no assertions).

    python bench/latency.py [--mailboxes 50] [--folders 5] [--moves 500] [--rate 5] [--poll-interval 2]
                            [--source ews|graph] [--graph-poll-interval 5] [--idle 10] [--in-process] [--quick]

Moves arrive as a Poisson process (``--rate`` per second over all mailboxes), each into a random tracked
folder of a random mailbox. Latency = the time a thread polling the SQLite database every 5 ms first sees
the committed activity, minus the time the move call on the simulator returned ("visible"). The
``tracked_at`` column (stamped by the SQL sink just before the commit) gives a second figure ("written").
Phase 2 forces polling honestly: the simulator answers every ``GetStreamingEvents`` with HTTP 503
(``sim.faults.refuse_streams``), so the stream reader fails, every mailbox falls back to polling every
``--poll-interval`` seconds, and the stream keeps being retried with back-off (each failed retry also
triggers a catch-up of every folder, as in production).
Phase 0 plays the same schedule into one more mailbox that the watcher does not track, followed by the
plain-exchangelib chain (notification → SyncFolderItems → GetItem → SQLite commit, bench/_baseline.py, in
its own process), measured the same way, so the streaming figures come with their ratio to that baseline.
Targets (DESIGN "Quality bars"): streaming p50 ≤ 2x the plain chain's p50 and p99 ≤ 3x its p99 (and in
absolute terms p50 ≤ 0.2 s, p99 ≤ 1 s); polling ≤ poll_interval + 1 s.
``--source graph`` follows the EWS streaming phase (the baseline, same run, same mailboxes) with two phases
through Microsoft Graph on a database of their own: change notifications (bench/_graph.py), then delta polling
every ``--graph-poll-interval`` s (graph.poll_interval's default). Every phase also reports its requests per
mailbox per 10 minutes, during the phase and over ``--idle`` s idle after it (Graph's budget: 10,000).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable

from _baseline import TABLE as PLAIN_TABLE
from _baseline import PlainChain
from _common import (
    FOLDER,
    ActivityPoller,
    Move,
    SyncTimes,
    add_common_arguments,
    address,
    configure_logs,
    cpu_label,
    latency_line,
    load,
    machine,
    percentile,
    poisson_offsets,
    records_csv,
    rules_yaml,
    sim_object,
    simulator,
    verdict,
)
from _graph import DEFAULT_POLL_INTERVAL, per_mailbox_per_10_min, start_graph_watcher

from foldertrack.testing.harness import USER_PASSWORD, Harness

PLAIN = "plain@bench.example"  # the baseline chain's mailbox (not in the watcher's rules)


def plan(staged, order, offsets, folders, rng) -> list[Move]:
    """One move per offset: the next staged mail of the mailbox ``order`` names, into a random folder."""
    cursor = {a: 0 for a in staged}
    moves = []
    for offset, mailbox in zip(offsets, order, strict=True):
        item_id, subject = staged[mailbox][cursor[mailbox]]
        cursor[mailbox] += 1
        moves.append(Move(offset, mailbox, item_id, FOLDER.format(rng.randrange(folders)), subject))
    return moves


def portions(staged, orders, phases) -> dict[str, dict[str, list]]:
    """Each phase's share of the staged mails (the moves its ``orders`` make), in phase order."""
    used: Counter[str] = Counter()
    out = {}
    for phase in phases:
        need = Counter(orders[phase])
        out[phase] = {a: items[used[a] : used[a] + need[a]] for a, items in staged.items()}
        used.update(need)
    return out


def run_phase(name, driver, poller, syncs, moves, timeout, *, count=None, mailboxes=1) -> dict[str, float]:
    """Play ``moves``, wait until they are all visible, print the figures of the phase. ``count`` gives the
    requests so far by kind (default: the simulator's EWS operations)."""
    count = count or (lambda: driver.stats()["requests"])
    syncs.take()
    before_stats = count()
    cpu0, wall0 = time.process_time(), time.monotonic()
    done = driver.play(moves)
    subjects = [s for s, _, _ in done]
    complete = poller.wait_for(subjects, timeout)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    after_stats = count()
    visible = [poller.seen[s] - after for s, _, after in done if s in poller.seen]
    written = [poller.tracked_at[s] - after for s, _, after in done if s in poller.tracked_at]
    missing = len(done) - len(visible)
    print(f"\n[{name}] {len(done)} moves over {done[-1][2] - done[0][1]:.1f} s")
    print(f"  visible  {latency_line(visible)}")
    print(f"  written  {latency_line(written)}")
    if missing or not complete:
        print(f"  {missing} move(s) NOT tracked within {timeout:.0f} s after the last move")
    ops = {k: after_stats.get(k, 0) - before_stats.get(k, 0) for k in after_stats if k != "MoveItem"}
    rate = per_mailbox_per_10_min(sum(ops.values()), mailboxes, wall)
    print(
        "  requests during the phase: "
        + ", ".join(f"{k} {v}" for k, v in sorted(ops.items()) if v)
        + f" = {rate:.0f} per mailbox per 10 min"
    )
    samples = syncs.take()
    print(f"  catch-up syncs: {len(samples)}; duration {latency_line([d for d, _ in samples])}")
    print(f"  first trigger → commit         {latency_line([a for _, a in samples])}")
    print(f"  {cpu_label(driver)} {cpu / wall * 100:.0f} % of one core over the phase")
    ordered = sorted(visible)
    return {
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1] if ordered else float("nan"),
        "missing": missing,
        "requests": rate,
    }


def idle_rate(count: Callable[[], dict], mailboxes: int, seconds: float) -> float:
    """Requests per mailbox per 10 minutes while nothing moves (polls, renewals, stream re-issues)."""
    if seconds <= 0:
        return float("nan")
    before = sum(v for k, v in count().items() if k != "MoveItem")
    time.sleep(seconds)
    return per_mailbox_per_10_min(
        sum(v for k, v in count().items() if k != "MoveItem") - before, mailboxes, seconds
    )


def graph_phases(args, driver, tmp, addresses, shares, orders, rng, results) -> None:
    """Change notifications, then delta polling, through Graph on a database of their own."""
    https_base, ca_path = driver.graph_app()
    with Harness(
        f"{tmp}/graph",
        simulator=sim_object(driver),
        poll_interval=args.graph_poll_interval,
        workers=args.workers,
    ) as h:
        h.import_records(records_csv(args.folders))
        h.write_rules(rules_yaml(addresses, args.folders))
        for phase, push in (("graph notifications", True), ("graph polling", False)):
            syncs = SyncTimes()
            t0 = time.monotonic()
            watcher, client = start_graph_watcher(h, https_base, ca_path, push=push, observer=syncs)
            idle = watcher.wait_idle(120)  # polling many folders often may keep the workers busy for good
            print(
                f"\n{phase}: watcher ready in {time.monotonic() - t0:.1f} s"
                + ("" if idle else ", NEVER idle")
            )
            count = lambda c=client: {"Graph": c.requests_sent}  # noqa: E731
            with ActivityPoller(h.database_url) as poller:
                offsets = poisson_offsets(args.moves, args.rate, args.seed + len(results))
                results[phase] = run_phase(
                    phase,
                    driver,
                    poller,
                    syncs,
                    plan(shares[phase], orders[phase], offsets, args.folders, rng),
                    30 + args.graph_poll_interval,
                    count=count,
                    mailboxes=args.mailboxes,
                )
            results[phase]["idle"] = idle_rate(count, args.mailboxes, args.idle)
            modes = Counter(s.mode for s in watcher.mailbox_states())
            print(
                f"  idle: {results[phase]['idle']:.0f} requests per mailbox per 10 min; modes {dict(modes)}"
            )
            h.stop_watcher()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--moves", type=int, default=500, help="moves per phase")
    parser.add_argument("--rate", type=float, default=5.0, help="moves per second over all mailboxes")
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--skip-polling", action="store_true")
    parser.add_argument("--source", choices=("ews", "graph"), default="ews")
    parser.add_argument("--graph-poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle request counting per phase")
    add_common_arguments(parser, quick_help="100 moves per phase at 10/s")
    args = parser.parse_args()
    if args.quick:
        args.moves, args.rate = 100, 10.0
    configure_logs(args.verbose)
    print(machine())
    print(
        f"latency: {args.mailboxes} mailboxes x {args.folders} tracked folders, {args.moves} moves per phase "
        f"at {args.rate:g}/s (Poisson), poll_interval {args.poll_interval:g} s, {args.workers} workers, "
        f"simulator {'in this process' if args.in_process else 'in a child process'}, source {args.source}"
    )
    rng = random.Random(args.seed)
    addresses = [address(n) for n in range(args.mailboxes)]
    if args.source == "graph":
        phases = ["streaming", "graph notifications", "graph polling"]
    else:
        phases = ["streaming"] + ([] if args.skip_polling else ["polling"])
    orders = {p: [rng.choice(addresses) for _ in range(args.moves)] for p in phases}
    counts = Counter(a for order in orders.values() for a in order)
    started = time.monotonic()
    results = {}
    with simulator(args.in_process) as driver, tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        t0 = time.monotonic()
        staged = driver.setup(addresses, args.folders, dict(counts), USER_PASSWORD, tag="lat")
        plain_staged = driver.setup([PLAIN], args.folders, {PLAIN: args.moves}, USER_PASSWORD, tag="plain")
        shares = portions(staged, orders, phases)
        ews_requests = lambda: driver.stats()["requests"]  # noqa: E731
        print(f"simulator set up in {time.monotonic() - t0:.1f} s ({sum(counts.values())} mails staged)")
        with Harness(
            tmp, simulator=sim_object(driver), poll_interval=args.poll_interval, workers=args.workers
        ) as h:
            h.import_records(records_csv(args.folders))
            h.write_rules(rules_yaml(addresses, args.folders))
            t0 = time.monotonic()
            syncs = SyncTimes()
            h.start_watcher(observer=syncs)
            ready = time.monotonic() - t0
            h.settle(120)
            print(
                f"watcher ready in {ready:.1f} s, idle after the start-up catch-up in {time.monotonic() - t0:.1f} s"
            )
            # phase 0: the plain-exchangelib chain on the same schedule, in its own process and database
            plain_db = f"sqlite:///{tmp}/plain.db"
            chain = PlainChain(
                sim_object(driver).url,
                PLAIN,
                USER_PASSWORD,
                [FOLDER.format(f) for f in range(args.folders)],
                plain_db,
            )
            try:
                with ActivityPoller(plain_db, table=PLAIN_TABLE) as poller:
                    offsets = poisson_offsets(args.moves, args.rate, args.seed)
                    results["plain"] = run_phase(
                        "plain exchangelib chain",
                        driver,
                        poller,
                        SyncTimes(),
                        plan(plain_staged, [PLAIN] * args.moves, offsets, args.folders, rng),
                        30,
                    )
            finally:
                chain.stop()
            with ActivityPoller(h.database_url) as poller:
                # phase 1: streaming
                offsets = poisson_offsets(args.moves, args.rate, args.seed)
                results["streaming"] = run_phase(
                    "streaming",
                    driver,
                    poller,
                    syncs,
                    plan(shares["streaming"], orders["streaming"], offsets, args.folders, rng),
                    30,
                    mailboxes=args.mailboxes,
                )
                if args.source == "graph":
                    results["streaming"]["idle"] = idle_rate(ews_requests, args.mailboxes, args.idle)
                    print(f"  idle: {results['streaming']['idle']:.0f} requests per mailbox per 10 min")
                if "polling" in phases:
                    driver.fault("refuse_streams", 503)
                    driver.fault("drop_streams")
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 60:
                        modes = Counter(s.mode for s in h.watcher.mailbox_states())
                        if modes.get("polling") == args.mailboxes:
                            break
                        time.sleep(0.05)
                    print(
                        f"\nstreams refused (HTTP 503): modes {dict(modes)} after {time.monotonic() - t0:.1f} s"
                    )
                    h.settle(60)
                    streams0 = driver.stats()["requests"].get("GetStreamingEvents", 0)
                    offsets = poisson_offsets(args.moves, args.rate, args.seed + 1)
                    results["polling"] = run_phase(
                        "polling",
                        driver,
                        poller,
                        syncs,
                        plan(shares["polling"], orders["polling"], offsets, args.folders, rng),
                        30 + args.poll_interval,
                        mailboxes=args.mailboxes,
                    )
                    streams = driver.stats()["requests"].get("GetStreamingEvents", 0) - streams0
                    modes = Counter(s.mode for s in h.watcher.mailbox_states())
                    print(
                        f"  modes at the end: {dict(modes)}; {streams} stream attempt(s) were refused meanwhile"
                    )
                    driver.fault("clear")
        if args.source == "graph":
            graph_phases(args, driver, tmp, addresses, shares, orders, rng, results)
    summary(args, results)
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


def summary(args, results) -> None:
    print("\nsummary (visible latency)")
    s, b = results["streaming"], results["plain"]
    r50, r99 = s["p50"] / b["p50"], s["p99"] / b["p99"]
    print(
        f"  plain exchangelib chain: p50 {b['p50'] * 1000:.1f} ms, p99 {b['p99'] * 1000:.1f} ms"
        + (f" ({b['missing']} missing)" if b["missing"] else "")
    )
    print(
        f"  streaming: p50 {s['p50'] * 1000:.1f} ms = {r50:.2f}x the plain chain (target ≤ 2x), "
        f"p99 {s['p99'] * 1000:.1f} ms = {r99:.2f}x (target ≤ 3x): "
        + verdict(r50 <= 2 and r99 <= 3 and not s["missing"])
    )
    print(
        f"  streaming absolute: p50 {s['p50'] * 1000:.0f} ms (target ≤ 200), p99 {s['p99'] * 1000:.0f} ms "
        "(target ≤ 1000): " + verdict(s["p50"] <= 0.2 and s["p99"] <= 1.0 and not s["missing"])
    )
    if "polling" in results:
        p = results["polling"]
        bound = args.poll_interval + 1
        print(
            f"  polling:   p99 {p['p99'] * 1000:.0f} ms, max {p['max'] * 1000:.0f} ms "
            f"(target ≤ {bound * 1000:.0f}): " + verdict(p["max"] <= bound and not p["missing"])
        )
    if "graph notifications" in results:
        print(f"  requests per mailbox per 10 min (phase / idle): EWS streaming {_rates(s)}")
        n, p = results["graph notifications"], results["graph polling"]
        print(
            f"  graph notifications: p50 {n['p50'] * 1000:.0f} ms = {n['p50'] / s['p50']:.2f}x EWS streaming, "
            f"p99 {n['p99'] * 1000:.0f} ms = {n['p99'] / s['p99']:.2f}x; requests {_rates(n)}"
            + (f"; {n['missing']} MISSING" if n["missing"] else "")
        )
        bound = args.graph_poll_interval + 1
        print(
            f"  graph polling ({args.graph_poll_interval:g} s): p50 {p['p50'] * 1000:.0f} ms = "
            f"{p['p50'] / s['p50']:.1f}x EWS streaming, p99 {p['p99'] * 1000:.0f} ms, max {p['max'] * 1000:.0f} ms "
            f"(target ≤ {bound * 1000:.0f}): {verdict(p['max'] <= bound and not p['missing'])}; requests {_rates(p)}"
        )


def _rates(result: dict[str, float]) -> str:
    return f"{result['requests']:.0f} / {result.get('idle', float('nan')):.0f}"


if __name__ == "__main__":
    main()
