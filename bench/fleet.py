"""Several ``foldertrack run`` processes on one PostgreSQL splitting many mailboxes by lease: start-up,
memory and idle CPU per instance, takeover after ``kill -9`` of one, latency during the takeover, and one
process holding every mailbox (a script, no assertions).

    python bench/fleet.py [--mailboxes 10000] [--instances 4] [--folders 5] [--idle 20] [--window 30]
                          [--rate 5] [--ttl 30s] [--database-url URL] [--no-single | --single-only]
                          [--no-profile] [--quick]

The issue's sizes (10,000 x 5 over 4) take far longer than 10 minutes on a 2-core machine: 2,000 x 5 over 4
runs in about 10 minutes (``--mailboxes 2000``); ``--single-only --mailboxes 10000`` measures the one-process
target alone.

Every instance is a real ``foldertrack run`` child process (config file, password from the environment,
``FOLDERTRACK_INSTANCE`` naming it), so RSS and CPU are read per process from ``/proc``. The simulator runs
in its own process. The database is a fresh schema on ``--database-url`` (default
``$FOLDERTRACK_TEST_DATABASE_URL`` or the local test server), dropped at the end, so runs never see each
other's or the tests' rows.

- start-up: from the spawn until every mailbox is leased by a live instance (``fleet_status``) and its
  ``subscription_health`` row says ``streaming``, written by that owner;
- idle: RSS and CPU of each instance over ``--idle`` seconds with nothing happening;
- latency: moves (Poisson, ``--rate`` per second, random mailboxes) for ``--window`` seconds, first with
  all instances up (baseline), then starting at the ``kill -9`` of one instance; move returned on the
  simulator → activity row visible in PostgreSQL; the ratio during / baseline is printed;
- takeover: from the ``kill -9`` until every mailbox the dead instance held is leased by another and
  streaming again (on one host the keeper sees the dead pid and reclaims at its next renewal, before the
  TTL: across hosts it is the TTL);
- single process: the fleet stops (SIGTERM hands the leases back), one instance takes all mailboxes;
  start-up, RSS, idle CPU, and a py-spy sample of where its idle CPU goes (``.venv/bin/pip install py-spy``).
Targets (issue 12): one process with 10,000 mailboxes under 500 MB RSS and under 5 % idle CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import _procs
from _common import (
    FOLDER,
    ActivityPoller,
    Move,
    RemoteSim,
    address,
    configure_logs,
    latency_line,
    load,
    machine,
    percentile,
    poisson_offsets,
    records_csv,
    rules_yaml,
    verdict,
)
from sqlalchemy import Engine, create_engine, func, make_url, select, text

from foldertrack.fleet import fleet_status
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import subscription_health
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD
from foldertrack.testing.process import WatcherProcess, write_config

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RSS_TARGET_MB = 500
IDLE_CPU_TARGET = 5.0


# -- the database ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a new schema at head; the schema is dropped afterwards."""
    schema = f"ft_bench_fleet_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = url.render_as_string(hide_password=False)
        upgrade_database(rendered)
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '30s'"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def survey(engine: Engine) -> tuple[dict[str, str], set[str]]:
    """(mailbox → name of the live instance leasing it, mailboxes streaming by their owner's health row)."""
    with engine.connect() as conn:
        fleet = fleet_status(conn)
        health = conn.execute(
            select(subscription_health.c.mailbox, subscription_health.c.mode, subscription_health.c.instance)
        ).all()
    owners = {m: s["owner_name"] for m, s in fleet["mailboxes"].items() if s["state"] == "owned"}
    streaming = {m for m, mode, inst in health if mode == "streaming" and owners.get(m) == inst}
    return owners, streaming


def wait_settled(
    engine: Engine,
    mailboxes: set[str],
    names: set[str],
    timeout: float,
    label: str,
    check: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Seconds until every one of ``mailboxes`` is leased by one of ``names``, and until it also streams;
    ``check`` (``Fleet.check``) ends the wait at once when a child died (a bad setting, say)."""
    t0 = time.monotonic()
    leased_at = None
    last_print = t0
    while True:
        began = time.monotonic()
        owners, streaming = survey(engine)
        now = time.monotonic()
        pause = max(0.25, 5 * (now - began))  # at 10,000 mailboxes a look costs ~0.1 s of our CPU
        held = {m for m in mailboxes if owners.get(m) in names}
        if leased_at is None and held == mailboxes:
            leased_at = now - t0
        if held == mailboxes and mailboxes <= streaming:
            return leased_at or now - t0, now - t0
        if now - t0 > timeout:
            raise SystemExit(
                f"{label}: after {timeout:.0f} s {len(held)} of {len(mailboxes)} leased, "
                f"{len(mailboxes & streaming)} streaming"
            )
        if now - last_print > 30:
            last_print = now
            print(f"  … {now - t0:.0f} s: {len(held)} leased, {len(mailboxes & streaming)} streaming")
        if check is not None:
            check()
        time.sleep(pause)


def wait_quiet(engine: Engine, timeout: float) -> float:
    """Seconds until no mailbox has queued or running catch-ups (``subscription_health.backlog``, written by
    each owner's timer), twice in a row: the first catch-up of every folder is done, the fleet is idle."""
    t0 = time.monotonic()
    quiet = 0
    while time.monotonic() - t0 < timeout:
        with engine.connect() as conn:
            backlog = conn.execute(
                select(func.coalesce(func.sum(subscription_health.c.backlog), 0))
            ).scalar_one()
        quiet = quiet + 1 if backlog == 0 else 0
        if quiet >= 2:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise SystemExit(f"still catching up after {timeout:.0f} s")


# -- the fleet -------------------------------------------------------------------------------------------


class Fleet:
    """The ``foldertrack run`` children of this run, killed at the end whatever happens."""

    def __init__(self, workdir: Path, endpoint: str, database_url: str, rules_dir: Path, watch: dict):
        self.workdir, self.endpoint, self.url, self.rules_dir, self.watch = (
            workdir,
            endpoint,
            database_url,
            rules_dir,
            watch,
        )
        self.procs: dict[str, WatcherProcess] = {}

    def spawn(self, name: str) -> WatcherProcess:
        config = write_config(
            self.workdir / f"{name}.toml",
            endpoint=self.endpoint,
            database_url=self.url,
            rules_dir=self.rules_dir,
            watch=self.watch,
        )
        proc = WatcherProcess(config, self.workdir / f"{name}.log", extra_env={"FOLDERTRACK_INSTANCE": name})
        self.procs[name] = proc.start()
        return proc

    def alive(self) -> dict[str, WatcherProcess]:
        return {n: p for n, p in self.procs.items() if p.running()}

    def check(self) -> None:
        """A child that exited by itself is a failed run: show its log's end."""
        for name, proc in self.procs.items():
            if proc.proc is not None and proc.proc.poll() not in (None, 0, -9):
                raise SystemExit(f"instance {name} exited {proc.proc.poll()}:\n{proc.log()[-3000:]}")

    def close(self) -> None:
        for proc in self.procs.values():
            proc.close()


def per_instance(
    procs: dict[str, WatcherProcess], owners: dict[str, str], seconds: float
) -> dict[str, tuple]:
    """name → (mailboxes held, RSS MB, CPU % over ``seconds``, threads)."""
    pids = {name: p.pid for name, p in procs.items()}
    cpu = _procs.cpu_percent(list(pids.values()), seconds)
    held = Counter(owners.values())
    return {
        name: (held.get(name, 0), _procs.rss_mb(pid), cpu[pid], _procs.threads(pid))
        for name, pid in pids.items()
    }


def print_instances(rows: dict[str, tuple], seconds: float) -> None:
    for name, (held, rss, cpu, nthreads) in rows.items():
        print(f"  {name}: {held:6d} mailboxes  RSS {rss:6.0f} MB  idle CPU {cpu:5.2f} % ({nthreads} threads)")
    print(f"  (CPU over {seconds:.0f} s of wall time, % of one core)")


# -- moves -----------------------------------------------------------------------------------------------


def plan_moves(addresses: list[str], count: int, rate: float, folders: int, seed: int) -> list[list[Move]]:
    """Two schedules of ``count`` moves each (baseline, takeover) into random mailboxes; items staged
    later (``Move.item_id`` is the index of the mailbox's staged mail until then)."""
    rng = random.Random(seed)
    used: Counter[str] = Counter()
    rounds = []
    for r in range(2):
        moves = []
        for offset in poisson_offsets(count, rate, seed + r):
            a = rng.choice(addresses)
            moves.append(Move(offset, a, str(used[a]), FOLDER.format(rng.randrange(folders)), ""))
            used[a] += 1
        rounds.append(moves)
    return rounds


def staged_moves(rounds: list[list[Move]], staged: dict[str, list[tuple[str, str]]]) -> list[list[Move]]:
    out = []
    for moves in rounds:
        out.append([])
        for m in moves:
            item_id, subject = staged[m.mailbox][int(m.item_id)]
            out[-1].append(Move(m.offset, m.mailbox, item_id, m.folder, subject))
    return out


def play_and_measure(driver: RemoteSim, poller: ActivityPoller, moves: list[Move]) -> threading.Thread:
    """Play ``moves`` on the simulator in a thread; its ``.result`` is [(subject, mailbox, latency)]."""
    by_subject = {m.subject: m.mailbox for m in moves}

    def run() -> None:
        done = driver.play(moves)
        subjects = [s for s, _, _ in done]
        poller.wait_for(subjects, 180)
        thread.result = [(s, by_subject[s], poller.seen[s] - t) for s, _, t in done if s in poller.seen]  # type: ignore[attr-defined]
        thread.missing = [s for s in subjects if s not in poller.seen]  # type: ignore[attr-defined]

    thread = threading.Thread(target=run, name="bench-moves", daemon=True)
    thread.start()
    return thread


def requests_delta(before: dict, after: dict) -> str:
    ops = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return ", ".join(f"{k} {v}" for k, v in sorted(ops.items()) if v) or "none"


def p(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


@dataclass
class Context:
    engine: Engine
    fleet: Fleet
    driver: RemoteSim
    url: str
    rounds: list[list[Move]]
    everyone: set[str]


def run_fleet(args, ctx: Context, figures: dict[str, float]) -> None:
    """Start-up of the fleet, idle figures, baseline moves, kill -9 of one instance with moves meanwhile."""
    engine, fleet, driver, url, rounds, everyone = (
        ctx.engine,
        ctx.fleet,
        ctx.driver,
        ctx.url,
        ctx.rounds,
        ctx.everyone,
    )
    names = [f"i{n + 1}" for n in range(args.instances)]
    for name in names:
        fleet.spawn(name)
    leased, subscribed = wait_settled(engine, everyone, set(names), args.timeout, "start-up", fleet.check)
    fleet.check()
    figures["startup"] = subscribed
    owners, _ = survey(engine)
    print(
        f"\nstart-up: all {args.mailboxes} mailboxes leased after {leased:.1f} s, all streaming after "
        f"{subscribed:.1f} s; split {dict(sorted(Counter(owners.values()).items()))}; "
        f"{driver.stats()['open_streams']} streaming connection(s) open"
    )
    figures["quiet"] = subscribed + wait_quiet(engine, args.timeout)
    print(
        f"  first catch-up of all {args.mailboxes * args.folders} folders done (no backlog) after {figures['quiet']:.1f} s"
    )
    time.sleep(3)
    rows = per_instance(fleet.alive(), owners, args.idle)
    sim_rss = _procs.rss_mb(driver.pid)
    print(f"\nidle ({load()}):")
    print_instances(rows, args.idle)
    print(f"  simulator process RSS {sim_rss:.0f} MB")
    figures["fleet_rss_max"] = max(r[1] for r in rows.values())
    figures["fleet_cpu_max"] = max(r[2] for r in rows.values())

    # baseline moves, then a kill -9 with the same moves
    with ActivityPoller(url, interval=0.02) as poller:
        baseline = play_and_measure(driver, poller, rounds[0])
        baseline.join()
        base = [lat for _, _, lat in baseline.result]  # type: ignore[attr-defined]
        print(
            f"\nbaseline, {len(rounds[0])} moves at {args.rate:g}/s, all instances up: {latency_line(base)}"
        )

        victim = names[0]
        orphans = {m for m, n in owners.items() if n == victim}
        requests0 = driver.stats()["requests"]
        during_t = play_and_measure(driver, poller, rounds[1])
        fleet.procs[victim].kill9()
        killed = time.monotonic()
        survivors = set(names) - {victim}
        leased, streaming = wait_settled(engine, orphans, survivors, args.timeout, "takeover", fleet.check)
        figures["takeover"] = streaming
        print(
            f"\nkill -9 of {victim} ({len(orphans)} mailboxes): all leased by the others after {leased:.1f} s, "
            f"all streaming again after {streaming:.1f} s"
        )
        during_t.join()
        during = during_t.result  # type: ignore[attr-defined]
        missing = during_t.missing  # type: ignore[attr-defined]
    all_lat = [lat for _, _, lat in during]
    orphan_lat = [lat for _, m, lat in during if m in orphans]
    other_lat = [lat for _, m, lat in during if m not in orphans]
    print(f"  {len(rounds[1])} moves at {args.rate:g}/s from the kill on: {latency_line(all_lat)}")
    print(f"    in the killed instance's mailboxes: {latency_line(orphan_lat)}")
    print(f"    in the other mailboxes:             {latency_line(other_lat)}")
    if missing:
        print(f"  {len(missing)} move(s) not tracked within 180 s: {missing[:5]}")
    for q in (50, 99):
        figures[f"p{q}_base"], figures[f"p{q}_during"] = p(base, q), p(all_lat, q)
        figures[f"p{q}_orphans"] = p(orphan_lat, q)
    wait_quiet(engine, args.timeout)
    print(f"  no backlog left {time.monotonic() - killed:.1f} s after the kill")
    print(f"  EWS requests from the kill on: {requests_delta(requests0, driver.stats()['requests'])}")
    time.sleep(3)
    owners, _ = survey(engine)
    rows = per_instance(fleet.alive(), owners, args.idle)
    print(f"\nafter the takeover, idle ({load()}):")
    print_instances(rows, args.idle)

    t0 = time.monotonic()
    for proc in fleet.alive().values():
        proc.terminate(60)
    print(f"\nthe fleet stopped (SIGTERM) in {time.monotonic() - t0:.1f} s")


def run_single(args, ctx: Context, figures: dict[str, float]) -> None:
    """One instance takes every mailbox: start-up, RSS, idle CPU, where the idle CPU goes."""
    engine, fleet, everyone = ctx.engine, ctx.fleet, ctx.everyone
    solo = fleet.spawn("solo")
    leased, subscribed = wait_settled(
        engine, everyone, {"solo"}, args.timeout, "single start-up", fleet.check
    )
    fleet.check()
    figures["single_startup"] = subscribed
    quiet = subscribed + wait_quiet(engine, args.timeout)
    print(
        f"single process: all {args.mailboxes} mailboxes leased after {leased:.1f} s, all streaming "
        f"after {subscribed:.1f} s, no backlog after {quiet:.1f} s"
    )
    time.sleep(3)
    owners, _ = survey(engine)
    rows = per_instance({"solo": solo}, owners, args.idle)
    print_instances(rows, args.idle)
    figures["single_rss"], figures["single_cpu"] = rows["solo"][1], rows["solo"][2]
    if not args.no_profile:
        print(_procs.profile(solo.pid, min(args.idle, 15.0)))
    fleet.check()


# -- main ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--folders", type=int, default=5, help="tracked folders per mailbox")
    parser.add_argument("--workers", type=int, default=4, help="watch.workers of each instance")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of moves, baseline and takeover")
    parser.add_argument("--rate", type=float, default=5.0, help="moves per second")
    parser.add_argument("--ttl", default="30s", help="watch.lease_ttl")
    parser.add_argument(
        "--database-url", default=os.environ.get("FOLDERTRACK_TEST_DATABASE_URL") or DEFAULT_DATABASE
    )
    parser.add_argument("--no-single", action="store_true", help="skip the one-process-holds-all part")
    parser.add_argument("--single-only", action="store_true", help="only the one-process-holds-all part")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy sample")
    parser.add_argument("--timeout", type=float, default=1800.0, help="limit for each start-up / takeover")
    parser.add_argument("--quick", action="store_true", help="500 mailboxes over 2 instances, 10 s idle")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.mailboxes, args.instances, args.idle, args.window = 500, 2, 10.0, 15.0
    configure_logs(args.verbose)
    print(machine())
    print(
        f"fleet: {args.mailboxes} mailboxes x {args.folders} tracked folders over {args.instances} "
        f"`foldertrack run` processes on one PostgreSQL, lease TTL {args.ttl}, {args.workers} workers each; "
        "simulator in a child process"
    )
    started = time.monotonic()
    addresses = [address(n) for n in range(args.mailboxes)]
    everyone = set(addresses)
    count = max(1, round(args.rate * args.window))
    rounds = plan_moves(addresses, count, args.rate, args.folders, args.seed)
    mails = Counter(m.mailbox for moves in rounds for m in moves)
    figures: dict[str, float] = {}
    watch = {
        "workers": args.workers,
        "debounce": "50ms",
        "lease_ttl": args.ttl,
        "stall_timeout": "1m",
        "start_timeout": "1h",
        "stream_timeout": "10m",
    }
    driver = RemoteSim(heartbeat=10.0)
    with contextlib.ExitStack() as stack:
        stack.callback(driver.stop)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ft-bench-fleet-")))
        url = stack.enter_context(fresh_schema(args.database_url))
        engine = open_database(url)
        stack.callback(engine.dispose)
        t0 = time.monotonic()
        driver.add_service_account(SERVICE_ACCOUNT, SERVICE_PASSWORD, impersonation=True)
        staged = driver.setup(addresses, args.folders, dict(mails), USER_PASSWORD, tag="fleet")
        rounds = staged_moves(rounds, staged)
        print(f"simulator set up in {time.monotonic() - t0:.1f} s ({sum(mails.values())} mails staged)")
        (tmp / "records.csv").write_text(records_csv(args.folders), encoding="utf-8")
        RecordDirectory(engine).import_csv(tmp / "records.csv")
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        (rules_dir / "rules.yaml").write_text(rules_yaml(addresses, args.folders), encoding="utf-8")
        fleet = Fleet(tmp, driver.url, url, rules_dir, watch)
        stack.callback(fleet.close)

        ctx = Context(engine, fleet, driver, url, rounds, everyone)
        if not args.single_only:
            run_fleet(args, ctx, figures)
        if not args.no_single:
            run_single(args, ctx, figures)
        fleet.close()

    print("\nsummary")
    if "startup" in figures:
        print_fleet_summary(args, figures)
    if "single_rss" in figures:
        print(
            f"  one process, {args.mailboxes} mailboxes: all streaming after {figures['single_startup']:.1f} s; "
            f"RSS {figures['single_rss']:.0f} MB (target < {RSS_TARGET_MB}): "
            f"{verdict(figures['single_rss'] < RSS_TARGET_MB)}; idle CPU {figures['single_cpu']:.2f} % "
            f"(target < {IDLE_CPU_TARGET:g} %): {verdict(figures['single_cpu'] < IDLE_CPU_TARGET)}"
        )
    print(f"total run time {time.monotonic() - started:.0f} s; {load()} at the end")


def print_fleet_summary(args, figures: dict[str, float]) -> None:
    print(
        f"  {args.mailboxes} mailboxes x {args.folders} folders over {args.instances} instances: all streaming "
        f"{figures['startup']:.1f} s after the spawn; takeover after kill -9 {figures['takeover']:.1f} s "
        f"(TTL {args.ttl})"
    )
    print(
        f"  per instance: RSS up to {figures['fleet_rss_max']:.0f} MB, idle CPU up to "
        f"{figures['fleet_cpu_max']:.2f} % of one core"
    )
    print(
        f"  move → activity p50 {figures['p50_base'] * 1000:.0f} ms / p99 {figures['p99_base'] * 1000:.0f} ms "
        f"before; from the kill on p50 {figures['p50_during'] * 1000:.0f} ms / p99 "
        f"{figures['p99_during'] * 1000:.0f} ms (x{figures['p50_during'] / figures['p50_base']:.1f} / "
        f"x{figures['p99_during'] / figures['p99_base']:.1f}); in the killed instance's mailboxes p50 "
        f"{figures['p50_orphans'] * 1000:.0f} ms, p99 {figures['p99_orphans'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
