"""The outbox queries on their own, on SQLite and PostgreSQL: order per key, retries, dead letters, pruning."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select

from foldertrack.delivery import outbox
from foldertrack.state.schema import outbox as outbox_table
from foldertrack.state.types import utcnow

SINK = "recording"


def _add(engine, key: str, op: str = "upsert") -> int:
    with engine.begin() as conn:
        outbox.add(conn, sink=SINK, key=key, op=op, mailbox="alice@example.com", send={"body": False})
        return conn.execute(select(outbox_table.c.id).order_by(outbox_table.c.id.desc())).scalars().first()


def _due(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(r.mail_key, r.op) for r in outbox.due(conn, SINK, range(outbox.PARTITIONS), 100)]


def test_only_the_head_of_each_key_is_due_and_a_waiting_head_blocks_its_key(database_engine):
    a1, a2 = _add(database_engine, "<a@x>"), _add(database_engine, "<a@x>", "untrack")
    _add(database_engine, "<b@x>")
    assert _due(database_engine) == [("<a@x>", "upsert"), ("<b@x>", "upsert")]

    later = utcnow() + timedelta(minutes=5)
    with database_engine.begin() as conn:
        outbox.mark_retry(conn, a1, 1, later, "429")
    assert _due(database_engine) == [("<b@x>", "upsert")]  # a2 waits behind a1
    with database_engine.connect() as conn:
        assert outbox.next_due_at(conn, SINK, range(outbox.PARTITIONS)) <= utcnow()  # b is due now

    with database_engine.begin() as conn:
        outbox.mark_delivered(conn, a1, 2)
    assert _due(database_engine) == [("<a@x>", "untrack"), ("<b@x>", "upsert")]
    with database_engine.begin() as conn:
        outbox.mark_dead(conn, a2, 1, "rejected")
    assert _due(database_engine) == [("<b@x>", "upsert")]  # a dead entry does not block its key


def test_replay_makes_a_dead_entry_due_again_and_a_later_delivered_entry_supersedes_it(database_engine):
    a1, a2 = _add(database_engine, "<a@x>", "untrack"), _add(database_engine, "<a@x>")
    with database_engine.begin() as conn:
        outbox.mark_dead(conn, a1, 1, "rejected")
        outbox.mark_delivered(conn, a2, 1)
        assert outbox.request_replay(conn, [a1]) == 1
    with database_engine.connect() as conn:
        (row,) = outbox.due(conn, SINK, range(outbox.PARTITIONS), 10)
        assert (
            row.id == a1
            and row.attempts == 0
            and outbox.send_options(row) == {"body": False, "attachments": True}
        )
        assert outbox.later_delivered(conn, row)  # the worker skips it: the later upsert is newer
    # an upsert is rebuilt from the current local state at delivery: replaying it is never stale
    u1, u2 = _add(database_engine, "<c@x>"), _add(database_engine, "<c@x>", "untrack")
    with database_engine.begin() as conn:
        outbox.mark_dead(conn, u1, 1, "rejected")
        outbox.mark_delivered(conn, u2, 1)
        assert outbox.request_replay(conn, [u1]) == 1
    with database_engine.connect() as conn:
        (row,) = [r for r in outbox.due(conn, SINK, range(outbox.PARTITIONS), 10) if r.id == u1]
        assert not outbox.later_delivered(conn, row)


def test_delivered_entries_are_pruned_after_the_retention_and_figures_count_per_sink(database_engine):
    old, new, waiting = (_add(database_engine, f"<{n}@x>") for n in ("old", "new", "waiting"))
    with database_engine.begin() as conn:
        outbox.mark_delivered(conn, old, 1)
        conn.execute(
            outbox_table.update()
            .where(outbox_table.c.id == old)
            .values(delivered_at=utcnow() - timedelta(days=8))
        )
        outbox.mark_delivered(conn, new, 1)
        outbox.note_success(conn, SINK, 2)
        outbox.note_failure(conn, SINK, "boom", transient=True, failing_since=utcnow())
        assert outbox.prune(conn, utcnow() - timedelta(days=7)) == 1
    with database_engine.connect() as conn:
        ids = set(conn.execute(select(outbox_table.c.id)).scalars())
        figures = outbox.figures(conn)[SINK]
    assert ids == {new, waiting}
    assert figures.backlog == 1 and figures.delivered_total == 2 and figures.failing_since is not None
    assert figures.last_error == "boom" and figures.oldest_pending_at is not None


def test_a_key_always_lands_in_the_same_partition():
    keys = [f"<{n}@example.com>" for n in range(500)]
    parts = [outbox.partition_of(k) for k in keys]
    assert parts == [outbox.partition_of(k) for k in keys]
    assert all(0 <= p < outbox.PARTITIONS for p in parts) and len(set(parts)) > outbox.PARTITIONS // 2


def test_an_entry_claimed_by_one_instance_is_left_to_it_until_the_claim_runs_out(database_engine):
    entry = _add(database_engine, "<a@x>")
    parts = range(outbox.PARTITIONS)
    with database_engine.begin() as conn:
        assert outbox.claim(conn, [entry], "host-a", utcnow() + timedelta(minutes=10)) == {entry}
        assert outbox.claim(conn, [entry], "host-b", utcnow() + timedelta(minutes=10)) == set()
        assert outbox.due(conn, SINK, parts, 10, "host-b") == []
        assert outbox.next_due_at(conn, SINK, parts, "host-b") is None  # nothing for b to wait for
        # the claiming process extends its own claim (a slow CRM, a long batch)
        assert [r.id for r in outbox.due(conn, SINK, parts, 10, "host-a")] == [entry]
        assert outbox.claim(conn, [entry], "host-a", utcnow() - timedelta(seconds=1)) == {entry}
        assert outbox.claim(conn, [entry], "host-b", utcnow() + timedelta(minutes=10)) == {entry}  # ran out
        # a's late mark is refused: b holds the entry now and b's mark is the one that counts
        outbox.mark_delivered(conn, entry, 1, owner="host-a")
        assert [r.id for r in outbox.due(conn, SINK, parts, 10, "host-b")] == [entry]
        # b stops: it hands its claims back, so a (or anyone) can take the entry at once
        assert outbox.release_claims(conn, "host-b") == 1
        assert outbox.claim(conn, [entry], "host-a", utcnow() + timedelta(minutes=10)) == {entry}


def test_two_processes_with_one_instance_name_never_share_claims(database_engine, tmp_path):
    """Two hosts (or containers) with one host name, or two processes started without
    ``FOLDERTRACK_INSTANCE`` on one machine, on one database: each process claims as itself, so one cannot
    take over (and deliver again) an entry the other is delivering."""
    from foldertrack.delivery.service import DeliveryService
    from foldertrack.testing.recording_sink import RecordingSink

    sink = RecordingSink(tmp_path / "crm.db")
    first = DeliveryService(sink, database_engine, instance="crm-host")
    second = DeliveryService(sink, database_engine, instance="crm-host")
    assert first.owner != second.owner and first.owner.startswith(f"crm-host@{socket.gethostname()}/")
    entry = _add(database_engine, "<shared@x>")
    with database_engine.begin() as conn:
        assert outbox.claim(conn, [entry], first.owner, utcnow() + timedelta(minutes=1)) == {entry}
        assert outbox.claim(conn, [entry], second.owner, utcnow() + timedelta(minutes=1)) == set()


def test_a_restart_frees_the_claims_of_its_killed_predecessors_on_this_host(database_engine, tmp_path):
    """After ``kill -9`` the restarted process frees what its dead predecessors (same instance, same host)
    claimed, instead of leaving those mails waiting ``claim_ttl``: a pid that is gone, or its own pid (a
    container restarted under one host name gets the same pid). Another host's claims are left alone."""
    from foldertrack.delivery.service import DeliveryService
    from foldertrack.testing.recording_sink import RecordingSink

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()[:100]
    until = utcnow() + timedelta(minutes=10)
    owners = {
        f"east@{host}/{dead.pid}-0000dead": _add(database_engine, "<a@x>"),  # its process is gone
        f"east@{host}/{os.getpid()}-0000prev": _add(database_engine, "<b@x>"),  # this pid, an earlier start
        f"east@{host}/1-00000001": _add(database_engine, "<c@x>"),  # pid 1 runs here: alive, left
        f"east@elsewhere/{dead.pid}-00000002": _add(database_engine, "<d@x>"),  # another host's: left
        f"west@{host}/{dead.pid}-00000003": _add(database_engine, "<e@x>"),  # another instance's: left
    }
    with database_engine.begin() as conn:
        for owner, entry in owners.items():
            assert outbox.claim(conn, [entry], owner, until) == {entry}
    webhook = f"east@{host}/{os.getpid()}-0000hook"  # this process's delivery to another sink: left
    other_sink = _add(database_engine, "<f@x>")
    with database_engine.begin() as conn:
        conn.execute(outbox_table.update().where(outbox_table.c.id == other_sink).values(sink="webhook"))
        assert outbox.claim(conn, [other_sink], webhook, until) == {other_sink}
    sink = RecordingSink(tmp_path / "crm.db")
    DeliveryService(sink, database_engine, instance="east")._release_dead_claims()
    with database_engine.connect() as conn:
        left = set(outbox.claim_owners(conn, ""))
    assert left == set(list(owners)[2:]) | {webhook}


def test_an_entry_that_keeps_raising_something_unexpected_is_dead_lettered(database_engine):
    """Not a sink error (a bug, an answer the sink cannot read): retried a few times, then a dead letter
    with the reason, so it shows in `status` instead of being retried for ever."""
    from foldertrack.delivery.service import DeliveryOptions, DeliveryService
    from foldertrack.sinks.base import ActivitySink
    from foldertrack.testing.harness import wait_until

    class Garbled(ActivitySink):
        name = SINK

        def upsert(self, activity, conn=None):
            raise AssertionError("not reached: the entry is an untrack")

        def untrack(self, key, conn=None):
            raise ValueError("answer is not JSON")

    entry = _add(database_engine, "<garbled@x>", "untrack")
    options = DeliveryOptions(workers=1, initial_backoff=0.01, max_backoff=0.02, max_unexpected_attempts=3)
    service = DeliveryService(Garbled(), database_engine, options)
    service.start()
    try:

        def status():
            with database_engine.connect() as conn:
                return conn.execute(select(outbox_table).where(outbox_table.c.id == entry)).first()

        wait_until(lambda: status().status == "dead", 10, "the entry dead-lettered")
    finally:
        service.stop()
    row = status()
    assert (
        row.attempts == 3 and "failed 3 times unexpectedly: ValueError: answer is not JSON" in row.last_error
    )
