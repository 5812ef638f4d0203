"""A burst page is written with a few statements, and a batched page keeps every guarantee of the careful
(savepoint per item) way: same rows, another writer's row respected, a failing item isolated."""

from __future__ import annotations

import threading

from sqlalchemy import event, func, select

from foldertrack.model import Activity, Party
from foldertrack.simulator import MailSpec
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state import ledger_store, page_batch
from foldertrack.state import watch_store as store
from foldertrack.state.schema import activities, activity_links, activity_parties, ledger
from foldertrack.testing.harness import Harness, options_for_tests

ALICE = "alice@example.com"
MAILS = 60


def _activity(key: str, subject: str) -> Activity:
    return Activity(
        key=key,
        mailbox=ALICE,
        folder_id="folder-1",
        folder_path="Inbox/Customers",
        message_id=key,
        subject=subject,
        direction="incoming",
        regarding=None,
        parties=(Party("from", "dana@contoso.com"), Party("to", ALICE)),
    )


def _contoso_tracked(h: Harness):
    """Alice's mailbox with Inbox/Customers/Contoso tracked (no record): her simulated mailbox."""
    mb = h.add_mailbox(ALICE)
    mb.create_folder("Inbox/Customers/Contoso")
    h.write_rules(
        f"mailboxes:\n  - addresses: [{ALICE}]\n    folders:\n      Inbox/Customers/Contoso:\n        record: null\n"
    )
    return mb


def test_a_burst_costs_a_few_statements_per_mail(tmp_path) -> None:
    """Before batching, a new mail cost 15-18 statements (reads, two savepoints, one row at a time)."""
    with Harness(tmp_path, **options_for_tests()) as h:
        mb = _contoso_tracked(h)
        ids = [
            h.sim.deliver(
                ALICE, MailSpec(subject=f"burst {n}", sender=f"c{n % 3}@contoso.com", to=[ALICE]), "Inbox"
            )
            for n in range(MAILS)
        ]
        h.start_watcher()
        h.settle()
        statements = 0
        lock = threading.Lock()

        def count(*args) -> None:
            nonlocal statements
            with lock:
                statements += 1

        event.listen(h.engine, "before_cursor_execute", count)
        try:
            for item in ids:
                mb.move_item(item, "Inbox/Customers/Contoso")
            h.wait_for(lambda: len(h.activities()) == MAILS, what="every mail tracked")
            h.settle()
        finally:
            event.remove(h.engine, "before_cursor_execute", count)
        # (reading h.activities() to wait counts too: a few statements per poll)
        assert statements / MAILS < 6, f"{statements} statements for {MAILS} mails"


def test_flush_respects_an_activity_another_writer_created(database_engine) -> None:
    """On PostgreSQL two instances may create one activity at once: the queued insert yields to the other
    writer's row and updates it, without doubling its parties."""
    sink = SqlActivitySink(database_engine)
    mine, theirs = _activity("<k1@x>", "mine"), _activity("<k2@x>", "theirs, then mine")
    with store.writing(database_engine) as conn:
        batch = page_batch.PageBatch.load(conn, ALICE, "folder-1", [mine.key, theirs.key])
        with page_batch.attached(conn, batch):
            assert sink.upsert(mine, conn) == "created"
            assert sink.upsert(theirs, conn) == "created"
        sink.upsert(_activity(theirs.key, "theirs"), conn)  # another writer, after the batch read
        batch.flush(conn)
    with database_engine.connect() as conn:
        subjects = dict(conn.execute(select(activities.c.key, activities.c.subject)).all())
        parties = conn.execute(
            select(activity_parties.c.activity_key, func.count()).group_by(activity_parties.c.activity_key)
        ).all()
    assert subjects == {mine.key: "mine", theirs.key: "theirs, then mine"}
    assert dict(parties) == {mine.key: 2, theirs.key: 2}


def test_batched_writes_match_the_careful_ones(database_engine) -> None:
    """Ledger row and link queued by the batch are the rows the unbatched functions write."""
    with store.writing(database_engine) as conn:
        batch = page_batch.PageBatch.load(conn, ALICE, "folder-1", ["<a@x>"])
        assert batch.ledger_entry(conn, ALICE, "<a@x>", "folder-1") is None
        batch.ledger_present(conn, ALICE, "<a@x>", "folder-1", "item-a")
        batch.put_link(
            conn,
            "<a@x>",
            owner_mailbox=ALICE,
            owner_folder_id="folder-1",
            regarding=None,
            state="tracked",
            exists=False,
            fingerprint="f" * 64,
        )
        assert (
            batch.ledger_entry(conn, ALICE, "<a@x>", "folder-1").item_id == "item-a"
        )  # read back from memory
        ledger_store.ledger_present(conn, ALICE, "<b@x>", "folder-1", "item-b")
        ledger_store.put_link(
            conn,
            "<b@x>",
            owner_mailbox=ALICE,
            owner_folder_id="folder-1",
            regarding=None,
            state="tracked",
            exists=False,
            fingerprint="f" * 64,
        )
        batch.flush(conn)
    skip = {"id", "mail_key", "item_id", "activity_key", "first_seen_at", "created_at", "updated_at"}
    with database_engine.connect() as conn:
        rows = {r.mail_key: r._mapping for r in conn.execute(select(ledger))}
        links = {r.activity_key: r._mapping for r in conn.execute(select(activity_links))}
    assert {k: v for k, v in rows["<a@x>"].items() if k not in skip} == {
        k: v for k, v in rows["<b@x>"].items() if k not in skip
    }
    assert {k: v for k, v in links["<a@x>"].items() if k not in skip} == {
        k: v for k, v in links["<b@x>"].items() if k not in skip
    }


def test_an_empty_catch_up_takes_two_connections(tmp_path) -> None:
    """The safety net re-syncs every folder (4 a second at 10,000 mailboxes, most of the idle CPU): when
    nothing changed, one connection reads what the page needs (cursor, replays) and one records the sync
    time; it took four (one per read, each with its pre-ping on PostgreSQL)."""
    from datetime import timedelta

    from foldertrack.state.schema import tracked_folders
    from foldertrack.state.types import utcnow
    from foldertrack.sync import catch_up

    with Harness(tmp_path, **options_for_tests()) as h:
        _contoso_tracked(h)
        h.start_watcher()
        h.settle()
        (target,) = h.watcher.mailbox_state(ALICE).targets.values()
        with h.engine.begin() as conn:  # synced long ago: this catch-up records its time
            conn.execute(tracked_folders.update().values(last_sync_at=utcnow() - timedelta(hours=2)))
        checkouts: list[object] = []

        def checkout(*args) -> None:
            checkouts.append(args)

        event.listen(h.engine, "checkout", checkout)
        try:
            result = catch_up(h.watcher.sync_context, target)
        finally:
            event.remove(h.engine, "checkout", checkout)
        assert result.tracked == 0 and result.pages == 1
        assert len(checkouts) == 2, f"{len(checkouts)} connections for an empty catch-up"
        with h.engine.connect() as conn:
            synced = conn.execute(select(tracked_folders.c.last_sync_at)).scalar_one()
        assert utcnow() - synced < timedelta(minutes=1)
