"""The unique keys that make double tracking impossible."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from foldertrack.state.schema import dead_letters, ledger, tracked_folders


def _ledger_row(**overrides):
    row = {
        "mailbox": "alice@contoso.example",
        "mail_key": "<abc@mail.example>",
        "folder_id": "AAMkF1",
        "item_id": "AAMkI1",
        "activity_key": "<abc@mail.example>",
    }
    return row | overrides


def test_same_mail_in_same_folder_twice_is_refused(database_engine):
    with database_engine.begin() as conn:
        conn.execute(insert(ledger).values(_ledger_row()))

    with pytest.raises(IntegrityError), database_engine.begin() as conn:
        conn.execute(insert(ledger).values(_ledger_row(item_id="AAMkI2")))

    with database_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger)).scalar() == 1


def test_same_mail_in_another_folder_or_mailbox_is_a_new_row(database_engine):
    with database_engine.begin() as conn:
        conn.execute(insert(ledger).values(_ledger_row()))
        conn.execute(insert(ledger).values(_ledger_row(folder_id="AAMkF2")))
        conn.execute(insert(ledger).values(_ledger_row(mailbox="bob@contoso.example")))
        row = conn.execute(select(ledger).where(ledger.c.folder_id == "AAMkF2")).one()

    assert row.state == "present"
    assert row.first_seen_at.utcoffset().total_seconds() == 0


def test_ledger_keeps_a_long_mail_key(database_engine):
    key = "<" + "x" * 990 + "@m>"
    with database_engine.begin() as conn:
        conn.execute(insert(ledger).values(_ledger_row(mail_key=key, activity_key=key, item_id="I" * 200)))
        assert conn.execute(select(ledger.c.mail_key)).scalar() == key


def test_ledger_state_is_checked(database_engine):
    with pytest.raises(IntegrityError), database_engine.begin() as conn:
        conn.execute(insert(ledger).values(_ledger_row(state="gone")))


def test_tracked_folder_is_unique_per_mailbox(database_engine):
    row = {
        "mailbox": "alice@contoso.example",
        "folder_id": "AAMkF1",
        "configured_path": "Inbox/Customers/Contoso",
        "current_path": "Inbox/Customers/Contoso",
        "rule_source": "rules/a.yaml:3",
    }
    with database_engine.begin() as conn:
        conn.execute(insert(tracked_folders).values(row))
        stored = conn.execute(select(tracked_folders)).one()
    assert (stored.status, stored.backfill_done, stored.sync_state) == ("active", False, None)

    with pytest.raises(IntegrityError), database_engine.begin() as conn:
        conn.execute(insert(tracked_folders).values(row))


def test_dead_letter_is_unique_per_item(database_engine):
    row = {"mailbox": "a@x", "folder_id": "F", "item_id": "I", "error": "boom", "attempts": 1}
    with database_engine.begin() as conn:
        conn.execute(insert(dead_letters).values(row))
    with pytest.raises(IntegrityError), database_engine.begin() as conn:
        conn.execute(insert(dead_letters).values(row))
