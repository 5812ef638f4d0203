"""The SQL sink: idempotent upserts, re-linking, untracking, attachments, error classes, plug-in loading."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from foldertrack.errors import ConfigError, PermanentSinkError, TransientSinkError
from foldertrack.model import Activity, Attachment, Party, RecordRef
from foldertrack.sinks.base import ActivitySink
from foldertrack.sinks.registry import available_sinks, load_sink
from foldertrack.sinks.sql import SqlActivitySink, sink_error
from foldertrack.state.activities import list_activities
from foldertrack.state.schema import activities, activity_attachments, activity_parties, ledger, records
from foldertrack.state.types import utcnow

CONTOSO = RecordRef("account", "acc-001")
FABRIKAM = RecordRef("account", "acc-002", "Fabrikam Inc")


def make_activity(**overrides) -> Activity:
    values = dict(
        key="<m1@contoso.example>",
        mailbox="alice@contoso.example",
        folder_id="AAMkF1",
        folder_path="Inbox/Customers/Contoso",
        message_id="<m1@contoso.example>",
        subject="Quote",
        direction="incoming",
        regarding=CONTOSO,
        conversation_id="conv-1",
        text_body="Hello",
        html_body="<p>Hello</p>",
        sender="bob@contoso.example",
        sent_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        received_at=datetime(2026, 1, 5, 9, 1, tzinfo=UTC),
        parties=(
            Party("from", "bob@contoso.example", "Bob", RecordRef("contact", "con-1")),
            Party("to", "alice@contoso.example", "Alice"),
            Party("cc", "carol@example.com"),
        ),
        attachments=(
            Attachment("quote.pdf", "application/pdf", 5, b"%PDF-"),
            Attachment("huge.zip", "application/zip", 50_000_000, None),
        ),
    )
    return Activity(**(values | overrides))


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


@pytest.fixture
def sink(database_engine) -> SqlActivitySink:
    return SqlActivitySink(database_engine)


def test_upsert_twice_is_one_row_with_the_same_children(sink, database_engine):
    activity = make_activity()

    assert sink.upsert(activity) == "created"
    assert sink.upsert(activity) == "unchanged"

    assert count(database_engine, activities) == 1
    assert count(database_engine, activity_parties) == 3
    assert count(database_engine, activity_attachments) == 2
    [row] = list_activities(database_engine)
    assert (row.regarding_type, row.regarding_id, row.state) == ("account", "acc-001", "tracked")
    assert row.sent_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert [p["role"] for p in row.parties] == ["from", "to", "cc"]
    assert row.parties[0]["record"] == "contact:con-1"


def test_attachment_over_the_limit_is_flagged_not_stored(sink, database_engine):
    sink.upsert(make_activity())

    with database_engine.connect() as conn:
        rows = conn.execute(select(activity_attachments).order_by(activity_attachments.c.position)).all()
    assert [(r.name, r.stored, r.content, r.size) for r in rows] == [
        ("quote.pdf", True, b"%PDF-", 5),
        ("huge.zip", False, None, 50_000_000),
    ]


def test_changed_regarding_is_an_update(sink, database_engine):
    sink.upsert(make_activity())
    first = list_activities(database_engine)[0]

    moved = make_activity(regarding=FABRIKAM, folder_id="AAMkF2", folder_path="Inbox/Customers/Fabrikam")
    assert sink.upsert(moved) == "updated"
    assert sink.upsert(moved) == "unchanged"

    [row] = list_activities(database_engine)
    assert (row.regarding, row.regarding_name, row.folder) == (
        "account:acc-002",
        "Fabrikam Inc",
        moved.folder_path,
    )
    assert row.tracked_at == first.tracked_at
    assert row.updated_at >= first.updated_at
    assert count(database_engine, activity_parties) == 3


def test_changed_parties_and_attachments_are_replaced_exactly(sink, database_engine):
    sink.upsert(make_activity())
    fewer = make_activity(parties=(Party("from", "bob@contoso.example"),), attachments=())

    assert sink.upsert(fewer) == "updated"

    [row] = list_activities(database_engine)
    assert row.parties == ({"role": "from", "address": "bob@contoso.example", "name": None, "record": None},)
    assert row.attachments == ()


def test_regarding_name_is_filled_from_the_record_directory(sink, database_engine):
    with database_engine.begin() as conn:
        now = utcnow()
        conn.execute(
            insert(records).values(
                type="account",
                id="acc-001",
                name="Contoso Ltd",
                name_folded="contoso ltd",
                created_at=now,
                updated_at=now,
            )
        )
    sink.upsert(make_activity())

    assert list_activities(database_engine)[0].regarding_name == "Contoso Ltd"


def test_untrack_clears_regarding_and_keeps_the_row(sink, database_engine):
    sink.upsert(make_activity())

    assert sink.untrack("<m1@contoso.example>") is True
    assert sink.untrack("<m1@contoso.example>") is True
    assert sink.untrack("<unknown@x>") is False

    [row] = list_activities(database_engine)
    assert (row.state, row.regarding_type, row.regarding_id, row.regarding_name) == (
        "untracked",
        None,
        None,
        None,
    )
    assert len(row.parties) == 3


def test_tracking_again_after_untrack_updates(sink, database_engine):
    sink.upsert(make_activity())
    sink.untrack("<m1@contoso.example>")

    assert sink.upsert(make_activity()) == "updated"
    assert list_activities(database_engine)[0].state == "tracked"


def test_upsert_joins_the_callers_transaction(sink, database_engine):
    with database_engine.connect() as conn, conn.begin() as tx:
        sink.upsert(make_activity(), conn)
        conn.execute(
            insert(ledger).values(
                mailbox="alice@contoso.example",
                mail_key="<m1@contoso.example>",
                folder_id="AAMkF1",
                item_id="I1",
                activity_key="<m1@contoso.example>",
            )
        )
        tx.rollback()
    assert count(database_engine, activities) == 0

    with database_engine.begin() as conn:
        assert sink.upsert(make_activity(), conn) == "created"
    assert count(database_engine, activities) == 1


def test_a_rejected_activity_leaves_the_callers_transaction_usable(sink, database_engine):
    bad = make_activity(key="<bad@x>", direction="sideways")
    with database_engine.begin() as conn:
        with pytest.raises(PermanentSinkError, match="<bad@x>"):
            sink.upsert(bad, conn)
        assert sink.upsert(make_activity(), conn) == "created"
    assert count(database_engine, activities) == 1


def test_nul_characters_are_dropped(sink, database_engine):
    sink.upsert(make_activity(text_body="a\x00b", subject="s\x00"))
    assert sink.upsert(make_activity(text_body="a\x00b", subject="s\x00")) == "unchanged"
    assert list_activities(database_engine)[0].subject == "s"


def test_naive_times_are_a_permanent_error(sink):
    with pytest.raises(PermanentSinkError, match="naive"):
        sink.upsert(make_activity(sent_at=datetime(2026, 1, 5, 9, 0)))


def test_same_content_as_other_mailbox_keeps_one_activity(sink, database_engine):
    sink.upsert(make_activity())
    assert sink.upsert(replace(make_activity(), mailbox="bob@contoso.example")) == "updated"
    assert count(database_engine, activities) == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OperationalError("UPDATE x", {}, Exception("database is locked")), TransientSinkError),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), TransientSinkError),
        (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), PermanentSinkError),
        (DataError("INSERT", {}, Exception("value too long")), PermanentSinkError),
    ],
)
def test_database_errors_are_classified(error, expected):
    mapped = sink_error(error, "<k@x>")
    assert type(mapped) is expected
    assert "<k@x>" in str(mapped)


def test_lost_connection_is_transient():
    error = OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert isinstance(sink_error(error, "k"), TransientSinkError)


def test_registry_loads_the_sql_sink_from_its_entry_point(database_engine):
    assert "sql" in available_sinks()
    sink = load_sink("sql", None, database_engine)
    assert isinstance(sink, SqlActivitySink)
    assert isinstance(sink, ActivitySink)
    assert sink.shares_state_database is True


def test_registry_names_installed_sinks_for_an_unknown_one(database_engine):
    with pytest.raises(ConfigError, match=r"unknown sink 'salesforce' \(installed sinks: .*sql"):
        load_sink("salesforce", None, database_engine)


def test_exchangelib_datetimes_are_accepted(sink, database_engine):
    from exchangelib import EWSDateTime, EWSTimeZone

    sent = EWSDateTime(2026, 1, 5, 10, 0, tzinfo=EWSTimeZone("Europe/Berlin"))
    assert (
        sink.upsert(make_activity(sent_at=sent, received_at=sent.astimezone(EWSTimeZone("UTC")))) == "created"
    )
    assert sink.upsert(make_activity(sent_at=sent)) == "updated"  # received_at changed
    assert list_activities(database_engine)[0].sent_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
