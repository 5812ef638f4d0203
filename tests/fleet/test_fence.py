"""The fence: a write under a lease epoch that was taken over is refused; an open fenced transaction
holds a successor off until it ends; a writer frozen inside its transaction is cut off (PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from foldertrack.errors import LeaseLostError
from foldertrack.fleet import assert_fenced, guard_sessions
from foldertrack.state.database import open_database
from foldertrack.testing.harness import wait_until
from tests.fleet.conftest import TTL, mailbox_names
from tests.fleet.keeper_child import PROBE_DDL

pytestmark = pytest.mark.postgres


@pytest.fixture
def probe(pg_engine: Engine) -> Engine:
    with pg_engine.begin() as conn:
        conn.execute(text(PROBE_DDL))
    return pg_engine


def write(engine: Engine, mailbox: str, epoch: int, writer: str) -> None:
    with engine.begin() as conn:
        assert_fenced(conn, mailbox, epoch)
        conn.execute(
            text("INSERT INTO fleet_probe (mailbox, instance, epoch) VALUES (:m, :w, :e)"),
            {"m": mailbox, "w": writer, "e": epoch},
        )


def probe_rows(engine: Engine) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text("SELECT mailbox, instance, epoch FROM fleet_probe ORDER BY id"))
        ]


def test_a_write_under_a_taken_over_epoch_is_refused(probe, make_keeper):
    box = mailbox_names(1)
    a = make_keeper(probe, "a", box)
    old = wait_until(a.owned, 10, "a owning the mailbox")[box[0]]
    write(probe, box[0], old, "a")  # the owner writes

    a.stop(release=False)  # a freezes: its daemon still holds `old`
    b = make_keeper(probe, "b", box)
    new = wait_until(b.owned, TTL + 3, "b taking over")[box[0]]
    write(probe, box[0], new, "b")

    with pytest.raises(
        LeaseLostError, match=rf"epoch {old} no longer, it was claimed again \(epoch {new}"
    ) as caught:
        write(probe, box[0], old, "a")  # a wakes up and writes what it had decided

    assert (caught.value.mailbox, caught.value.epoch) == (box[0], old)
    assert new > old
    assert probe_rows(probe) == [(box[0], "a", old), (box[0], "b", new)]


def test_a_write_after_a_clean_release_is_refused(probe, make_keeper):
    box = mailbox_names(1)
    a = make_keeper(probe, "a", box)
    epoch = wait_until(a.owned, 10, "a owning the mailbox")[box[0]]
    a.stop()

    with pytest.raises(LeaseLostError, match="the lease expired"):
        write(probe, box[0], epoch, "a")
    with pytest.raises(LeaseLostError, match="there is no lease"):
        write(probe, "nobody@example.com", 1, "a")
    assert probe_rows(probe) == []


def test_an_open_fenced_transaction_holds_a_successor_off_until_it_commits(probe, make_keeper):
    held, free = mailbox_names(2)
    a = make_keeper(probe, "a", [held])
    epoch = wait_until(a.owned, 10, "a owning its mailbox")[held]

    with probe.connect() as conn:
        transaction = conn.begin()
        assert_fenced(conn, held, epoch)  # the writer is between its check and its commit
        a.stop()  # a hands back at once (its renewals and its release are not blocked by the writer)
        b = make_keeper(probe, "b", [held, free])
        wait_until(lambda: free in b.owned(), 10, "b claiming the free mailbox")
        assert held not in b.owned()  # skipped while the writer's transaction is open
        conn.execute(
            text("INSERT INTO fleet_probe (mailbox, instance, epoch) VALUES (:m, 'a', :e)"),
            {"m": held, "e": epoch},
        )
        transaction.commit()

    new = wait_until(lambda: b.owned().get(held), 10, "b claiming it once the writer committed")
    assert new > epoch
    assert probe_rows(probe) == [(held, "a", epoch)]


def test_a_writer_frozen_inside_its_transaction_is_cut_off(probe, postgres_url, make_keeper):
    box = mailbox_names(1)
    writer_engine = open_database(postgres_url)
    guard_sessions(writer_engine, TTL)
    try:
        a = make_keeper(probe, "a", box)
        epoch = wait_until(a.owned, 10, "a owning the mailbox")[box[0]]
        conn = writer_engine.connect()
        transaction = conn.begin()
        assert_fenced(conn, box[0], epoch)  # ... and the process freezes here, lock held
        a.stop(release=False)

        b = make_keeper(probe, "b", box)
        wait_until(b.owned, TTL + 3, "b taking over despite the frozen writer's lock")

        with pytest.raises(DBAPIError):  # the frozen writer wakes up: its session was ended
            conn.execute(
                text("INSERT INTO fleet_probe (mailbox, instance, epoch) VALUES (:m, 'a', :e)"),
                {"m": box[0], "e": epoch},
            )
            transaction.commit()
        conn.invalidate()
        conn.close()
        assert probe_rows(probe) == []
    finally:
        writer_engine.dispose()
