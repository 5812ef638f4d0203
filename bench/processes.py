"""N ``foldertrack run`` processes on one host sharing the mailboxes by lease: burst throughput per N (a
script, no assertions).

    python bench/processes.py [--instances 1,2] [--mailboxes 40] [--mails 1000] [--folders 5]
                              [--postgres URL] [--quick]

For each N: a scratch PostgreSQL database on ``--postgres``'s server, ``--mailboxes`` mailboxes in the
simulator (a child process), N real ``foldertrack run`` processes on one rules directory and that database
(they split the mailboxes by lease, see the README "Several instances on one database"); once every mailbox
is leased and streaming and every instance holds a share, ``--mails`` mails spread over the mailboxes are
moved at once and the time until the last activity is visible in the database is taken. Each process is
one Python interpreter (one GIL): more processes use more cores.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from pathlib import Path

import psycopg
from _common import FOLDER, ActivityPoller, Move, address, load, machine, records_csv, rules_yaml, simulator
from burst import POSTGRES, scratch_postgres

from foldertrack.testing.harness import USER_PASSWORD, Harness
from foldertrack.testing.process import WatcherProcess, write_config


def _ready(url: str, mailboxes: int, instances: int) -> bool:
    """Every mailbox leased and streaming, and every instance holding a share."""
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as db,
    ):
        owners, leased = db.execute(
            "SELECT count(DISTINCT owner), count(*) FROM mailbox_leases WHERE expires_at > now()"
        ).fetchone()
        streaming = db.execute(
            "SELECT count(*) FROM subscription_health WHERE mode = 'streaming'"
        ).fetchone()[0]
        return owners == instances and leased == mailboxes and streaming == mailboxes
    return False


def run(n: int, driver, args, offset: int) -> float:
    """One round with ``n`` processes; returns mails/s."""
    addresses = [address(offset + i) for i in range(args.mailboxes)]
    counts = {a: 0 for a in addresses}
    for i in range(args.mails):
        counts[addresses[i % len(addresses)]] += 1
    staged = driver.setup(addresses, args.folders, counts, USER_PASSWORD, tag=f"proc{offset}")
    rng = random.Random(args.seed + n)
    with (
        scratch_postgres(args.postgres) as url,
        tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp,
        Harness(tmp, simulator=driver, database_url=url) as h,
    ):
        h.import_records(records_csv(args.folders))
        h.write_rules(rules_yaml(addresses, args.folders))
        config = write_config(
            Path(tmp) / "foldertrack.toml",
            endpoint=driver.url,
            database_url=url,
            rules_dir=h.rules_dir,
            watch={"workers": args.workers, "debounce": "50ms", "poll_interval": "60s", "lease_ttl": "10s"},
        )
        procs = [WatcherProcess(config, Path(tmp) / f"watcher-{i}.log") for i in range(n)]
        try:
            t0 = time.monotonic()
            for proc in procs:
                proc.start()
            while not _ready(url, args.mailboxes, n):
                if time.monotonic() - t0 > 180 or not all(p.running() for p in procs):
                    raise RuntimeError(f"{n} instance(s) not ready: {procs[0].log()[-2000:]}")
                time.sleep(0.2)
            print(
                f"\n[{n} process(es)] every mailbox leased and streaming after {time.monotonic() - t0:.1f} s"
            )
            time.sleep(2)  # start-up catch-ups done
            moves = [
                Move(0.0, a, item_id, FOLDER.format(rng.randrange(args.folders)), subject)
                for a, items in staged.items()
                for item_id, subject in items
            ]
            rng.shuffle(moves)
            with ActivityPoller(url, interval=0.05) as poller:
                done = driver.play(moves)
                subjects = [s for s, _, _ in done]
                complete = poller.wait_for(subjects, 180)
                seen = [poller.seen[s] for s in subjects if s in poller.seen]
            seconds = max(seen) - done[0][1]
            print(
                f"  {len(seen)}/{len(moves)} mails tracked {seconds:.2f} s after the first move "
                f"({len(seen) / seconds:.0f} mails/s)" + ("" if complete else "  -- INCOMPLETE")
            )
            return len(seen) / seconds if complete else 0.0
        finally:
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.terminate()
                proc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="1,2", help="comma-separated process counts")
    parser.add_argument("--mailboxes", type=int, default=40)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--folders", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="sync workers per process")
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="400 mails over 20 mailboxes")
    args = parser.parse_args()
    if args.quick:
        args.mails, args.mailboxes = 400, 20
    print(machine())
    counts = [int(n) for n in args.instances.split(",")]
    print(
        f"processes: {args.mails} mails at once over {args.mailboxes} mailboxes x {args.folders} folders, "
        f"{args.workers} workers per process, N = {counts}, PostgreSQL, simulator in a child process"
    )
    started = time.monotonic()
    rates = {}
    with simulator(False) as driver:
        for i, n in enumerate(counts):
            rates[n] = run(n, driver, args, 1000 * (i + 1))
    print("\nsummary")
    base = rates[counts[0]]
    for n, rate in rates.items():
        print(f"  {n} process(es): {rate:.0f} mails/s = {rate / base:.2f}x {counts[0]} process(es)")
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


if __name__ == "__main__":
    main()
