"""A LeaseKeeper in its own process, for tests that ``kill -9``, ``SIGSTOP`` or ``SIGTERM`` it.

Writes its ownership intervals (JSON lines, see :mod:`tests.fleet.ownership`) to ``--report``; with
``--write-every`` a thread makes a fenced write to ``fleet_probe`` for every owned mailbox that often, as
the daemon's sync would. Commands on stdin, one JSON answer per line on stdout: ``snapshot`` (remember the
leases owned now), ``write`` (a fenced write for each remembered lease, whether still owned or not: what a
daemon paused between deciding and writing does), ``stop``. SIGTERM stops cleanly, releasing the leases.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sqlalchemy import Engine, text

from foldertrack.errors import LeaseLostError
from foldertrack.fleet import LeaseKeeper, assert_fenced, guard_sessions
from foldertrack.state.database import SQLITE_BEGIN_OPTION, open_database
from tests.fleet.ownership import OwnershipSampler

PROBE_DDL = (
    "CREATE TABLE fleet_probe (id BIGSERIAL PRIMARY KEY, mailbox TEXT NOT NULL, instance TEXT NOT NULL, "
    "epoch BIGINT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
)
SQLITE_PROBE_DDL = (
    "CREATE TABLE fleet_probe (id INTEGER PRIMARY KEY AUTOINCREMENT, mailbox TEXT NOT NULL, "
    "instance TEXT NOT NULL, epoch INTEGER NOT NULL, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
)


def fenced_write(engine: Engine, instance: str, mailbox: str, epoch: int) -> str:
    """One ownership-dependent transaction: "ok", or "refused: <why>" when the fence stops it."""
    try:
        with engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "immediate"}) as conn, conn.begin():
            assert_fenced(conn, mailbox, epoch)
            conn.execute(
                text("INSERT INTO fleet_probe (mailbox, instance, epoch) VALUES (:m, :i, :e)"),
                {"m": mailbox, "i": instance, "e": epoch},
            )
        return "ok"
    except LeaseLostError as exc:
        return f"refused: {exc}"


class _Terminated(Exception):
    pass


def _terminate(_signo: int, _frame: object) -> None:
    raise _Terminated


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--mailboxes", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--claim-interval", type=float, default=0.1)
    parser.add_argument("--write-every", type=float, default=0.0)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _terminate)
    engine = open_database(args.url)
    guard_sessions(engine, args.ttl)  # as `foldertrack run` does: a writer frozen mid-transaction lets go
    keeper = LeaseKeeper(engine, name=args.name, ttl=args.ttl, claim_interval=args.claim_interval)
    keeper.set_mailboxes(args.mailboxes.split(","))
    stop_writing = threading.Event()
    report = open(args.report, "a", encoding="utf-8")  # noqa: SIM115 - closed at the end
    sampler = OwnershipSampler(args.name, keeper.owned, sink=report)
    writer = threading.Thread(target=_write_loop, args=(engine, keeper, args, stop_writing), daemon=True)
    captured: dict[str, int] = {}

    def answer(record: dict) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    try:
        keeper.start()
        sampler.start()
        if args.write_every > 0:
            writer.start()
        answer({"ready": keeper.id})
        for line in sys.stdin:
            command = line.strip()
            if command == "snapshot":
                captured = keeper.owned()
                answer({"captured": captured})
            elif command == "write":
                answer({"written": {m: fenced_write(engine, args.name, m, e) for m, e in captured.items()}})
            elif command == "stop":
                break
    except _Terminated:
        pass
    finally:
        stop_writing.set()
        if writer.is_alive():
            writer.join()
        sampler.stop()
        keeper.stop()
        report.close()
        engine.dispose()
    answer({"stopped": True})
    return 0


def _write_loop(engine: Engine, keeper: LeaseKeeper, args: argparse.Namespace, stop: threading.Event) -> None:
    while not stop.wait(args.write_every):
        for mailbox, epoch in keeper.owned().items():
            fenced_write(engine, args.name, mailbox, epoch)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
