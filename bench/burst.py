"""A burst of mails moved into tracked folders at once: time until all are tracked (a script, no assertions).

    python bench/burst.py [--mails 1000] [--spread 20] [--folders 5] [--in-process] [--quick]

Round 1 moves ``--mails`` mails of one mailbox into its tracked folders, back to back; round 2 moves the
same number spread over ``--spread`` mailboxes. Each round reports how long the moves themselves took on
the simulator and the time from the first move to the last activity being visible in the database (a
thread polls SQLite every 5 ms). Target (DESIGN "Quality bars"): 1,000 mails tracked within 10 s.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

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

TARGET_SECONDS = 10.0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--spread", type=int, default=20, help="mailboxes of round 2")
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
    one = address(0)
    spread = [address(n) for n in range(1, args.spread + 1)]
    counts = {one: args.mails}
    for n in range(args.mails):
        counts[spread[n % len(spread)]] = counts.get(spread[n % len(spread)], 0) + 1
    started = time.monotonic()
    results = {}
    with simulator(args.in_process) as driver, tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        t0 = time.monotonic()
        staged = driver.setup([one, *spread], args.folders, counts, USER_PASSWORD, tag="burst")
        print(f"simulator set up in {time.monotonic() - t0:.1f} s ({sum(counts.values())} mails staged)")
        with Harness(tmp, simulator=sim_object(driver), workers=args.workers) as h:
            h.import_records(records_csv(args.folders))
            h.write_rules(rules_yaml([one, *spread], args.folders))
            t0 = time.monotonic()
            h.start_watcher()
            h.settle(120)
            print(f"watcher streaming and idle after {time.monotonic() - t0:.1f} s")
            with ActivityPoller(h.database_url) as poller:
                results["one"] = burst(
                    "1 mailbox", driver, poller, {one: staged[one]}, args.folders, rng, 120
                )
                h.settle(60)
                rest = {a: staged[a] for a in spread}
                results["spread"] = burst(
                    f"{args.spread} mailboxes", driver, poller, rest, args.folders, rng, 120
                )
    print("\nsummary")
    for key, label in (("one", "1 mailbox"), ("spread", f"{args.spread} mailboxes")):
        print(
            f"  {args.mails} mails, {label}: all tracked in {results[key]:.2f} s "
            f"(target ≤ {TARGET_SECONDS:.0f} s): " + verdict(results[key] <= TARGET_SECONDS)
        )
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


if __name__ == "__main__":
    main()
