"""Keepers in separate processes on one PostgreSQL: ``kill -9``, ``SIGSTOP`` past the TTL, rolling restart.

Each child samples its own ``owned()`` continuously (intervals on the shared CLOCK_MONOTONIC) and, like the
daemon's sync, makes fenced writes to ``fleet_probe`` for what it owns; the tests check that no mailbox was
ever owned by two processes at once, that epochs grow at every claim, and that no write under an old epoch
committed after a write under a newer one.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from foldertrack.fleet import fleet_status
from foldertrack.testing.harness import wait_until
from tests.fleet.children import KeeperProcess
from tests.fleet.conftest import CLAIM_INTERVAL, TTL, mailbox_names
from tests.fleet.keeper_child import PROBE_DDL
from tests.fleet.ownership import double_ownerships, epoch_regressions

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def spawn(tmp_path, postgres_url) -> Iterator[Callable[..., KeeperProcess]]:
    procs: list[KeeperProcess] = []

    def start(name: str, boxes: list[str], *, write_every: float = 0.05, ttl: float = TTL) -> KeeperProcess:
        proc = KeeperProcess(
            tmp_path,
            postgres_url,
            name,
            boxes,
            ttl=ttl,
            claim_interval=CLAIM_INTERVAL,
            write_every=write_every,
        )
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.close()


@pytest.fixture
def probe(pg_engine: Engine) -> Engine:
    with pg_engine.begin() as conn:
        conn.execute(text(PROBE_DDL))
    return pg_engine


def owners(engine: Engine) -> dict[str, str]:
    """mailbox -> instance id, for leases held now by a live instance (database view)."""
    return {m: s["owner"] for m, s in fleet_status(engine)["mailboxes"].items() if s["state"] == "owned"}


def split_over(engine: Engine, procs: list[KeeperProcess], total: int) -> bool:
    now = owners(engine)
    share = math.ceil(total / len(procs))
    ids = {p.id for p in procs}
    per = [sum(1 for o in now.values() if o == p.id) for p in procs]
    return len(now) == total and set(now.values()) <= ids and max(per) <= share


def assert_exclusive(procs: list[KeeperProcess]) -> None:
    intervals = [i for p in procs for i in p.intervals()]
    assert intervals
    assert double_ownerships(intervals) == []
    assert epoch_regressions(intervals) == []


def probe_rows(engine: Engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id, mailbox, instance, epoch FROM fleet_probe ORDER BY id")))


def written_by_others(engine: Engine, instance: str, epochs: dict[str, int]) -> bool:
    """Whether every mailbox in ``epochs`` has a committed write by another instance under a newer epoch."""
    done = {
        r.mailbox
        for r in probe_rows(engine)
        if r.instance != instance and r.epoch > epochs.get(r.mailbox, 1 << 62)
    }
    return set(epochs) <= done


def assert_fenced_history(engine: Engine) -> None:
    """Per mailbox, committed writes never go back to an older epoch; each epoch has one writer."""
    latest: dict[str, int] = {}
    writer: dict[tuple[str, int], str] = {}
    for row in probe_rows(engine):
        assert row.epoch >= latest.get(row.mailbox, 0), f"stale write committed: {row}"
        latest[row.mailbox] = row.epoch
        assert writer.setdefault((row.mailbox, row.epoch), row.instance) == row.instance, row


def test_kill_9_of_one_of_three_processes_moves_its_mailboxes_within_the_ttl(probe, spawn):
    boxes = mailbox_names(9)
    procs = [spawn(f"p{n}", boxes) for n in range(3)]
    wait_until(lambda: split_over(probe, procs, 9), 20, "9 mailboxes split over 3 processes")
    victim, survivors = procs[0], procs[1:]
    orphans = {m for m, o in owners(probe).items() if o == victim.id}
    assert orphans

    killed = victim.kill()
    wait_until(lambda: split_over(probe, survivors, 9), TTL + 5, "the survivors owning all 9")

    assert time.monotonic() - killed <= TTL + 1.0
    dead = next(i for i in fleet_status(probe)["instances"] if i["id"] == victim.id)
    assert dead["state"] == "stopped" and dead["stop_reason"].startswith("process gone")  # reaped: same host
    epochs_then = dict.fromkeys(orphans, 0)
    wait_until(
        lambda: written_by_others(probe, victim.name, epochs_then), 5, "successors writing the orphans"
    )
    for proc in survivors:
        proc.terminate()
    assert_exclusive(procs)
    assert_fenced_history(probe)


def test_a_process_paused_past_its_ttl_has_its_late_writes_refused(probe, spawn):
    boxes = mailbox_names(4)
    a, b = spawn("a", boxes), spawn("b", boxes)
    wait_until(lambda: split_over(probe, [a, b], 4), 20, "2 + 2")
    held = a.command("snapshot")["captured"]
    assert len(held) == 2

    a.signal(signal.SIGSTOP)  # paused between deciding to write and writing
    # one of a's writers may be frozen inside its transaction: its session is ended after TTL / 3
    wait_until(lambda: owners(probe) == dict.fromkeys(boxes, b.id), TTL + 5, "b owning all 4")
    wait_until(lambda: written_by_others(probe, "a", held), 5, "b writing a's mailboxes under newer epochs")
    a.signal(signal.SIGCONT)

    written = a.command("write")["written"]

    assert set(written) == set(held)
    assert all(outcome.startswith("refused: ") and "claimed again" in outcome for outcome in written.values())
    wait_until(lambda: split_over(probe, [a, b], 4), 20, "a rejoining: 2 + 2 again")
    a.terminate()
    b.terminate()
    assert_exclusive([a, b])
    assert_fenced_history(probe)


#: a TTL long enough that a lease left to expire could never pass for one handed back, however loaded
#: the machine (expiry takes at least two thirds of it after the last renewal)
ROLLING_TTL = 12.0


def test_rolling_restart_moves_mailboxes_in_seconds(probe, spawn):
    boxes = mailbox_names(6)
    procs = [spawn(f"p{n}", boxes, ttl=ROLLING_TTL) for n in range(3)]
    wait_until(lambda: split_over(probe, procs, 6), 20, "6 mailboxes split over 3 processes")
    every = list(procs)
    for n in range(3):
        leaving = procs.pop(0)
        started = time.monotonic()
        leaving.terminate()
        wait_until(lambda: split_over(probe, procs, 6), ROLLING_TTL / 2, "the others owning all 6")
        assert time.monotonic() - started < ROLLING_TTL / 2  # handed back at SIGTERM, never left to expire
        procs.append(spawn(f"q{n}", boxes, ttl=ROLLING_TTL))
        every.append(procs[-1])
        wait_until(lambda: split_over(probe, procs, 6), 20, "balanced again with the replacement")
    for proc in procs:
        proc.terminate()
    assert_exclusive(every)
    assert_fenced_history(probe)
    assert {m for m, s in fleet_status(probe)["mailboxes"].items() if s["state"] == "owned"} == set()
