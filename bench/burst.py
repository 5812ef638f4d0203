"""A burst of mails moved into tracked folders at once: time until all are tracked (a script, no assertions).

    python bench/burst.py [--mails 1000] [--spread 20] [--folders 5] [--postgres URL | --no-postgres]
                          [--in-process] [--quick]

For each database (SQLite, then PostgreSQL in a scratch database created on ``--postgres``'s server and
dropped at the end), round 1 moves ``--mails`` mails of one mailbox into its tracked folders, back to back;
round 2 moves the same number spread over ``--spread`` mailboxes. Each round reports how long the moves
took on the simulator and the time from the first move to the last activity being visible in the database
(a thread polls it). Then the same number of mails is moved in one more mailbox and caught up by a plain
exchangelib loop (SyncFolderItems → GetItem → one transaction per page, bench/_baseline.py, in its own
process, same database): the watcher's mails/s is reported as a ratio to that loop's.
Targets (DESIGN "Quality bars"): 1,000 mails tracked within 5 s; throughput within 2x of the plain loop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import tempfile
import time
from collections.abc import Iterator

from _baseline import plain_loop
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
    records_csv,
    rules_yaml,
    sim_object,
    simulator,
    verdict,
)

from foldertrack.testing.harness import USER_PASSWORD, Harness

TARGET_SECONDS = 5.0
TARGET_RATIO = 2.0
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """A fresh database on ``url``'s server for this run (other runs and tests keep theirs), dropped after."""
    import psycopg

    server = url.replace("postgresql+psycopg://", "postgresql://")
    name = f"ft_bench_burst_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def burst(name, driver, poller, staged, folders, rng, timeout) -> float:
    """Move every staged mail at once; print the figures; return the seconds until all were tracked."""
    moves = [
        Move(0.0, mailbox, item_id, FOLDER.format(rng.randrange(folders)), subject)
        for mailbox, items in staged.items()
        for item_id, subject in items
    ]
    rng.shuffle(moves)  # mailboxes interleaved, as many users (or one rule) would do it
    requests0 = driver.stats()["requests"]
    cpu0 = time.process_time()
    done = driver.play(moves)
    first, last_move = done[0][1], done[-1][2]
    subjects = [s for s, _, _ in done]
    complete = poller.wait_for(subjects, timeout)
    seen = [poller.seen[s] for s in subjects if s in poller.seen]
    all_tracked = max(seen) - first if seen else float("nan")
    cpu = time.process_time() - cpu0
    requests = driver.stats()["requests"]
    ops = {k: requests.get(k, 0) - requests0.get(k, 0) for k in requests}
    print(f"\n[{name}] {len(moves)} mails into {folders} tracked folders of {len(staged)} mailbox(es)")
    print(f"  the moves took {last_move - first:.2f} s on the simulator")
    if seen:
        print(f"  first activity visible after {min(seen) - first:.2f} s")
    print(
        f"  all {len(seen)}/{len(moves)} tracked {all_tracked:.2f} s after the first move "
        f"({len(seen) / all_tracked:.0f} activities/s)"
        + ("" if complete else f"  -- {len(moves) - len(seen)} NOT tracked within {timeout:.0f} s")
    )
    per_mail = [poller.seen[s] - t for s, _, t in done if s in poller.seen]
    print(f"  per mail, move returned → visible: {latency_line(per_mail)}")
    print(
        "  EWS requests: "
        + ", ".join(f"{k} {v}" for k, v in sorted(ops.items()) if v and k != "MoveItem")
        + f"; {cpu_label(driver)} {cpu:.1f} s ({cpu / all_tracked * 100:.0f} % of one core)"
    )
    return all_tracked if complete else float("inf")


def plain_round(name, driver, database_url, staged, folders, rng) -> float:
    """The plain exchangelib loop over the same number of mails in as many mailboxes; returns its mails/s."""
    moves = [
        Move(0.0, mailbox, item_id, FOLDER.format(rng.randrange(folders)), subject)
        for mailbox, items in staged.items()
        for item_id, subject in items
    ]
    rng.shuffle(moves)
    paths = [FOLDER.format(f) for f in range(folders)]
    count, seconds, cpu = plain_loop(
        sim_object(driver).url, list(staged), USER_PASSWORD, paths, database_url, lambda: driver.play(moves)
    )
    print(
        f"\n[plain exchangelib loop, {name}] {count}/{len(moves)} mails caught up in {seconds:.2f} s "
        f"({count / seconds:.0f} mails/s, one thread, {len(staged) * folders} folder syncs; its CPU {cpu:.1f} s)"
    )
    return count / seconds


def run_backend(label, database_url, driver, args, rng, offset) -> dict[str, float]:
    """The two watcher rounds and the plain loop over as many mails and mailboxes on one database."""
    one = address(offset)
    spread = [address(offset + n) for n in range(1, args.spread + 1)]
    plain_one = f"plain{offset}@bench.example"
    plain_spread = [f"plain{offset + n}@bench.example" for n in range(1, args.spread + 1)]
    counts = {one: args.mails, plain_one: args.mails}
    for n in range(args.mails):
        for group in (spread, plain_spread):
            counts[group[n % len(group)]] = counts.get(group[n % len(group)], 0) + 1
    print(f"\n=== {label} ===")
    t0 = time.monotonic()
    everyone = [one, *spread, plain_one, *plain_spread]
    staged = driver.setup(everyone, args.folders, counts, USER_PASSWORD, tag=f"burst{offset}")
    print(f"simulator set up in {time.monotonic() - t0:.1f} s ({sum(counts.values())} mails staged)")
    rates: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp,
        Harness(tmp, simulator=sim_object(driver), database_url=database_url, workers=args.workers) as h,
    ):
        h.import_records(records_csv(args.folders))
        h.write_rules(rules_yaml([one, *spread], args.folders))
        t0 = time.monotonic()
        h.start_watcher()
        h.settle(120)
        print(f"watcher streaming and idle after {time.monotonic() - t0:.1f} s")
        interval = 0.005 if h.database_url.startswith("sqlite") else 0.02
        with ActivityPoller(h.database_url, interval=interval) as poller:
            seconds = burst("1 mailbox", driver, poller, {one: staged[one]}, args.folders, rng, 120)
            rates["one"], rates["one_seconds"] = args.mails / seconds, seconds
            h.settle(60)
            rest = {a: staged[a] for a in spread}
            seconds = burst(f"{args.spread} mailboxes", driver, poller, rest, args.folders, rng, 120)
            rates["spread"], rates["spread_seconds"] = args.mails / seconds, seconds
        h.stop_watcher()
        plain_url = database_url or f"sqlite:///{tmp}/plain.db"
        rates["plain_one"] = plain_round(
            "1 mailbox", driver, plain_url, {plain_one: staged[plain_one]}, args.folders, rng
        )
        rates["plain_spread"] = plain_round(
            f"{args.spread} mailboxes",
            driver,
            plain_url,
            {a: staged[a] for a in plain_spread},
            args.folders,
            rng,
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--spread", type=int, default=20, help="mailboxes of round 2")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server (a scratch database is made)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    add_common_arguments(parser, quick_help="200 mails")
    args = parser.parse_args()
    if args.quick:
        args.mails = 200
    configure_logs(args.verbose)
    print(machine())
    print(
        f"burst: {args.mails} mails at once, 1 mailbox then {args.spread}; {args.folders} tracked folders each, "
        f"{args.workers} workers, simulator {'in this process' if args.in_process else 'in a child process'}"
    )
    rng = random.Random(args.seed)
    started = time.monotonic()
    results: dict[str, dict[str, float]] = {}
    with simulator(args.in_process) as driver:
        results["SQLite"] = run_backend("SQLite", None, driver, args, rng, 0)
        if not args.no_postgres:
            with scratch_postgres(args.postgres) as url:
                results["PostgreSQL"] = run_backend("PostgreSQL", url, driver, args, rng, 1000)
    print("\nsummary")
    for backend, r in results.items():
        for key, label in (("one", "1 mailbox"), ("spread", f"{args.spread} mailboxes")):
            seconds, plain = r[f"{key}_seconds"], r[f"plain_{key}"]
            ratio = plain / r[key]
            print(
                f"  {backend:10} {args.mails} mails, {label:12}: all tracked in {seconds:.2f} s "
                f"(target ≤ {TARGET_SECONDS:.0f} s), {r[key]:.0f} mails/s = plain loop ({plain:.0f}/s) "
                f"/ {ratio:.2f} (target ≤ {TARGET_RATIO:g}): "
                + verdict(seconds <= TARGET_SECONDS and ratio <= TARGET_RATIO)
            )
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


if __name__ == "__main__":
    main()
