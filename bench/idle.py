"""One ``foldertrack run`` process watching many mailboxes: start-up until all are streaming, RSS, idle CPU,
against a baseline process watching a handful, measured in the same run (a script, no assertions).

    python bench/idle.py [--mailboxes 10000] [--folders 5] [--idle 30] [--baseline 10] [--workers 4]
                         [--safety-interval 15m] [--safety-rate 3] [--settle 120] [--database-url URL] [--no-profile] [--quick]

The quality bar (DESIGN "Quality bars", issue 12): 10,000 mailboxes x 5 folders in one process, under 500 MB
RSS and under 5 % CPU when idle. Periodic work must be O(due), not O(all mailboxes), so idle CPU is the
baseline's (the process's fixed cost: timer, lease keeper, supervisor, stream heartbeats) plus a small
per-mailbox part; both are printed, with the per-mailbox trend.

Both watchers are real ``foldertrack run`` child processes on a fresh PostgreSQL schema (dropped at the end),
the simulator runs in its own process, so RSS and CPU are read per process from ``/proc`` and are the
watcher's alone. First the baseline watches ``--baseline`` mailboxes, is measured and stopped (SIGTERM hands
its leases back), then the measured process takes all ``--mailboxes``:

- start-up: from the spawn until every mailbox is leased by it and its ``subscription_health`` row says
  ``streaming`` (subscribed), and until every tracked folder has had its first catch-up;
- idle: RSS and CPU over ``--idle`` seconds of wall time with no mail moving: stream heartbeats and the
  periodic work, which includes the safety net (``watch.safety_sync_interval``, ``--safety-interval``):
  every mailbox re-syncs its folder tree and folders once a round, a cost per mailbox that no O(due)
  bookkeeping removes, bounded by ``watch.safety_sync_rate`` (4 syncs a second: at 10,000 x 5 a round takes
  about 4 h). Each mailbox's first safety net comes anywhere in the first round, so the safety net runs at
  its steady rate from the start and the idle figure includes it. ``--safety-interval 7d`` leaves
  it (nearly) out and measures the rest (timer, lease keeper, supervisor, streams); the simulator's CPU
  meanwhile is printed for context;
- where the idle CPU goes: a py-spy sample (``.venv/bin/pip install py-spy``) unless ``--no-profile``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import _procs
from _common import RemoteSim, address, configure_logs, load, machine, records_csv, rules_yaml, verdict
from fleet import DEFAULT_DATABASE, Fleet, fresh_schema, wait_settled
from sqlalchemy import func, select

from foldertrack.state.database import open_database
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import tracked_folders
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD

RSS_TARGET_MB = 500
IDLE_CPU_TARGET = 5.0


def wait_caught_up(engine, folders: int, timeout: float) -> float:
    """Seconds until ``folders`` tracked folders have had their first catch-up (the backlog never empties
    at 10,000 mailboxes once the safety net has started, so it is not what is waited for)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with engine.connect() as conn:
            done = conn.execute(
                select(func.count())
                .select_from(tracked_folders)
                .where(tracked_folders.c.sync_state.is_not(None), tracked_folders.c.backfill_done.is_(True))
            ).scalar_one()
        if done >= folders:
            return time.monotonic() - t0
        time.sleep(1.0)
    raise SystemExit(f"first catch-ups not done after {timeout:.0f} s")


def measure(fleet: Fleet, engine, name: str, mailboxes: set[str], args, sim_pid: int) -> dict[str, float]:
    """Spawn ``name``, wait until it streams every mailbox and is quiet, then its idle RSS and CPU."""
    t0 = time.monotonic()
    proc = fleet.spawn(name)
    leased, subscribed = wait_settled(
        engine, mailboxes, {name}, args.timeout, f"{name} start-up", fleet.check
    )
    fleet.check()
    quiet = subscribed + wait_caught_up(engine, len(mailboxes) * args.folders, args.timeout)
    # the minutes after the first catch-ups cost more than idle (at 10,000 mailboxes: 16 % of a core over the
    # first 60 s, 11 % over 120 s, 8.4 % over 240 s): wait that out, so the figure is the steady idle
    time.sleep(args.settle if name != "baseline" else 3)
    cpu = _procs.cpu_percent([proc.pid, sim_pid], args.idle)
    figures = {
        "mailboxes": len(mailboxes),
        "leased": leased,
        "startup": subscribed,
        "quiet": quiet,
        "rate": len(mailboxes) / subscribed if subscribed else float("nan"),
        "rss": _procs.rss_mb(proc.pid),
        "cpu": cpu[proc.pid],
        "sim_cpu": cpu[sim_pid],
        "threads": _procs.threads(proc.pid),
        "spawn_to_settled": time.monotonic() - t0,
    }
    print(
        f"{name}: {len(mailboxes)} mailboxes x {args.folders} folders: all leased after {leased:.1f} s, all "
        f"streaming after {subscribed:.1f} s ({figures['rate']:.1f} mailboxes/s), first catch-ups done after "
        f"{quiet:.1f} s"
    )
    print(
        f"  idle over {args.idle:.0f} s: CPU {figures['cpu']:.2f} % of one core, RSS {figures['rss']:.0f} MB, "
        f"{figures['threads']} threads (simulator process meanwhile {figures['sim_cpu']:.2f} %; {load()})"
    )
    if not args.no_profile and name != "baseline":
        print(_procs.profile(proc.pid, min(args.idle, 30.0)))
    fleet.check()
    t0 = time.monotonic()
    proc.terminate(120)
    print(f"  stopped (SIGTERM) in {time.monotonic() - t0:.1f} s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--folders", type=int, default=5, help="tracked folders per mailbox")
    parser.add_argument("--baseline", type=int, default=10, help="mailboxes of the baseline process")
    parser.add_argument("--workers", type=int, default=4, help="watch.workers")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument(
        "--settle",
        type=float,
        default=120.0,
        help="seconds to wait after the first catch-ups before measuring",
    )
    parser.add_argument("--safety-interval", default="15m", help="watch.safety_sync_interval (default 15m)")
    parser.add_argument("--safety-rate", type=int, default=3, help="watch.safety_sync_rate (default 3)")
    parser.add_argument(
        "--database-url", default=os.environ.get("FOLDERTRACK_TEST_DATABASE_URL") or DEFAULT_DATABASE
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="limit for each start-up")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy sample")
    parser.add_argument("--quick", action="store_true", help="500 mailboxes, 10 s idle")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.mailboxes, args.idle = 500, 10.0
    args.baseline = max(1, min(args.baseline, args.mailboxes))
    configure_logs(args.verbose)
    print(machine())
    print(
        f"idle: one `foldertrack run` process with {args.mailboxes} mailboxes x {args.folders} folders, "
        f"{args.workers} workers, safety net every {args.safety_interval} "
        f"at most {args.safety_rate:g} syncs/s, against a baseline process with "
        f"{args.baseline}; PostgreSQL; simulator in a child process"
    )
    started = time.monotonic()
    addresses = [address(n) for n in range(args.mailboxes)]
    watch = {
        "workers": args.workers,
        "debounce": "50ms",
        "lease_ttl": "30s",
        "stall_timeout": "5m",
        "start_timeout": "1h",
        "stream_timeout": "10m",
        "safety_sync_interval": args.safety_interval,
        "safety_sync_rate": args.safety_rate,
    }
    driver = RemoteSim(heartbeat=10.0)
    with contextlib.ExitStack() as stack:
        stack.callback(driver.stop)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ft-bench-idle-")))
        url = stack.enter_context(fresh_schema(args.database_url))
        engine = open_database(url)
        stack.callback(engine.dispose)
        t0 = time.monotonic()
        driver.add_service_account(SERVICE_ACCOUNT, SERVICE_PASSWORD, impersonation=True)
        driver.setup(addresses, args.folders, {}, USER_PASSWORD, tag="idle")
        print(f"simulator set up in {time.monotonic() - t0:.1f} s")
        (tmp / "records.csv").write_text(records_csv(args.folders), encoding="utf-8")
        RecordDirectory(engine).import_csv(tmp / "records.csv")
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        fleet = Fleet(tmp, driver.url, url, rules_dir, watch)
        stack.callback(fleet.close)
        sim_pid = driver.pid

        (rules_dir / "rules.yaml").write_text(rules_yaml(addresses[: args.baseline], args.folders), "utf-8")
        base = measure(fleet, engine, "baseline", set(addresses[: args.baseline]), args, sim_pid)
        (rules_dir / "rules.yaml").write_text(rules_yaml(addresses, args.folders), "utf-8")
        solo = measure(fleet, engine, "solo", set(addresses), args, sim_pid)
        fleet.close()

    extra = max(1, solo["mailboxes"] - base["mailboxes"])
    cpu_per_1000 = (solo["cpu"] - base["cpu"]) / extra * 1000
    rss_per_1000 = (solo["rss"] - base["rss"]) / extra * 1000
    print("\nsummary")
    print(
        f"  {args.mailboxes} mailboxes x {args.folders} folders in one process: all streaming after "
        f"{solo['startup']:.1f} s ({solo['rate']:.1f} mailboxes/s), first catch-ups done after {solo['quiet']:.1f} s"
    )
    print(
        f"  RSS {solo['rss']:.0f} MB (target < {RSS_TARGET_MB}): {verdict(solo['rss'] < RSS_TARGET_MB)}; "
        f"idle CPU {solo['cpu']:.2f} % (target < {IDLE_CPU_TARGET:g} %): {verdict(solo['cpu'] < IDLE_CPU_TARGET)}"
    )
    print(
        f"  baseline ({base['mailboxes']} mailboxes, same run): RSS {base['rss']:.0f} MB, idle CPU "
        f"{base['cpu']:.2f} %; per 1,000 mailboxes more: RSS +{rss_per_1000:.1f} MB, idle CPU "
        f"{cpu_per_1000:+.3f} % (x{solo['cpu'] / base['cpu'] if base['cpu'] else float('nan'):.1f} the baseline)"
    )
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


if __name__ == "__main__":
    main()
