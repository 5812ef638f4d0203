"""SQLite: one watcher per database. A second one is refused while the first lives and takes over when it
is dead (stale heartbeat, or its process gone on this host); the old one's late writes are fenced out."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, select, text

from foldertrack.errors import InstanceConflictError, LeaseLostError
from foldertrack.fleet import LeaseKeeper, assert_fenced, fleet_status
from foldertrack.state.database import open_database
from foldertrack.state.schema import fleet_instances
from foldertrack.testing.harness import wait_until
from tests.fleet.children import KeeperProcess
from tests.fleet.conftest import mailbox_names
from tests.fleet.keeper_child import SQLITE_PROBE_DDL

SHORT_TTL = 1.0


@pytest.fixture
def lite(sqlite_url: str) -> Iterator[Engine]:
    engine = open_database(sqlite_url)
    try:
        yield engine
    finally:
        engine.dispose()


def database_file(engine: Engine) -> str:
    return str(make_url(str(engine.url)).database)


def test_the_only_watcher_owns_every_mailbox(lite, make_keeper):
    boxes = mailbox_names(5)
    keeper = make_keeper(lite, "solo", boxes)

    owned = wait_until(lambda: len(keeper.owned()) == 5 and keeper.owned(), 10, "all 5 owned")
    with lite.begin() as conn:
        for mailbox, epoch in owned.items():
            assert_fenced(conn, mailbox, epoch)
    status = fleet_status(lite)
    assert [(i["name"], i["state"], i["leases"]) for i in status["instances"]] == [("solo", "alive", 5)]


def test_a_second_watcher_is_refused_naming_the_database_and_the_live_one(lite, make_keeper):
    make_keeper(lite, "first", mailbox_names(2))

    second = LeaseKeeper(lite, name="second", ttl=SHORT_TTL)
    with pytest.raises(InstanceConflictError) as caught:
        second.start()

    message = str(caught.value)
    assert database_file(lite) in message
    assert f"instance first on host {socket.gethostname()}, pid {os.getpid()}" in message
    assert "use PostgreSQL" in message
    assert caught.value.exit_code == 75


def test_a_watcher_with_a_stale_heartbeat_is_taken_over_and_fenced_out(lite, make_keeper):
    box = mailbox_names(1)
    first = make_keeper(lite, "first", box, ttl=SHORT_TTL, claim_interval=0.05)
    old = wait_until(first.owned, 10, "first owning the mailbox")[box[0]]
    first.stop(release=False)  # hangs: no more heartbeats, though its process (this one) lives on

    def try_start() -> LeaseKeeper | None:
        try:
            return make_keeper(lite, "second", box, ttl=SHORT_TTL, claim_interval=0.05)
        except InstanceConflictError:
            return None

    second = wait_until(try_start, SHORT_TTL + 3, "the second watcher starting once the first is stale")
    new = wait_until(second.owned, 5, "second owning the mailbox")[box[0]]

    assert new > old
    with pytest.raises(LeaseLostError, match="claimed again"), lite.begin() as conn:
        assert_fenced(conn, box[0], old)
    with lite.connect() as conn:
        reason = conn.execute(
            select(fleet_instances.c.stop_reason).where(fleet_instances.c.id == first.id)
        ).scalar_one()
    assert reason.startswith("taken over by second") and reason.endswith("heartbeat stale")


def test_a_watcher_whose_process_is_gone_is_taken_over_at_once(lite, sqlite_url, tmp_path, make_keeper):
    box = mailbox_names(2)
    child = KeeperProcess(tmp_path, sqlite_url, "child", box, ttl=60.0, claim_interval=0.05).start()
    try:
        wait_until(lambda: fleet_status(lite)["instances"][0]["leases"] == 2, 10, "the child owning both")
        with pytest.raises(InstanceConflictError, match=f"pid {child.proc.pid}"):
            LeaseKeeper(lite, name="me", ttl=60.0).start()

        child.kill()  # heartbeat still fresh for a minute, but the process is gone

        me = make_keeper(lite, "me", box, ttl=60.0, claim_interval=0.05)
        wait_until(lambda: len(me.owned()) == 2, 5, "me owning both right away")
        gone = next(i for i in fleet_status(lite)["instances"] if i["name"] == "child")
        assert gone["state"] == "stopped" and gone["stop_reason"].endswith("process gone")
    finally:
        child.close()


def test_a_paused_watcher_taken_over_gives_up_and_its_late_write_is_refused(
    lite, sqlite_url, tmp_path, make_keeper
):
    with lite.begin() as conn:
        conn.execute(text(SQLITE_PROBE_DDL))
    box = mailbox_names(2)
    child = KeeperProcess(tmp_path, sqlite_url, "paused", box, ttl=SHORT_TTL, claim_interval=0.05).start()
    try:
        wait_until(lambda: fleet_status(lite)["instances"][0]["leases"] == 2, 10, "the child owning both")
        held = child.command("snapshot")["captured"]
        child.signal(signal.SIGSTOP)

        def try_start() -> LeaseKeeper | None:
            try:
                return make_keeper(lite, "successor", box, ttl=SHORT_TTL, claim_interval=0.05)
            except InstanceConflictError:
                return None

        successor = wait_until(try_start, SHORT_TTL + 3, "taking over the paused watcher")
        wait_until(lambda: len(successor.owned()) == 2, 5, "the successor owning both")
        child.signal(signal.SIGCONT)

        written = child.command("write")["written"]

        assert set(written) == set(held) and all(w.startswith("refused: ") for w in written.values())
        child.command("stop")  # its keeper found itself superseded; it exits cleanly
        assert child.proc.wait(10) == 0
        assert "taken over by another watcher" in child.log.read_text()
        with lite.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM fleet_probe")).scalar_one() == 0
        assert len(successor.owned()) == 2
    finally:
        child.close()
