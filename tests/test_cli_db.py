"""``foldertrack db``, ``records`` and ``activities`` through the real CLI: output, JSON and exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import make_url

from foldertrack.cli import main
from foldertrack.model import RECORD_TYPES, Activity, Party, RecordRef
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state.database import head_revision, open_database

DATA = Path(__file__).parent / "data"


def run(*args: str, env: dict[str, str] | None = None):
    runner = CliRunner()
    return runner.invoke(main, list(args), env={"FOLDERTRACK_DATABASE_URL": None, **(env or {})})


def track(url: str, key: str, mailbox: str, regarding: RecordRef | None, subject: str) -> None:
    engine = open_database(url)
    try:
        SqlActivitySink(engine).upsert(
            Activity(
                key=key,
                mailbox=mailbox,
                folder_id="F-" + key,
                folder_path="Inbox/Customers",
                message_id=key,
                subject=subject,
                direction="incoming",
                regarding=regarding,
                sent_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
                parties=(Party("from", "bob@contoso.example"),),
            )
        )
    finally:
        engine.dispose()


def test_db_upgrade_then_current(empty_database_url):
    result = run("db", "upgrade", "--database-url", empty_database_url)
    assert result.exit_code == 0, result.output
    assert f"schema upgraded from empty to {head_revision()}" in result.output

    again = run("db", "upgrade", "--database-url", empty_database_url)
    assert again.exit_code == 0
    assert "already at" in again.output

    current = run("db", "current", "--database-url", empty_database_url)
    assert current.exit_code == 0
    assert f"schema at {head_revision()} (current)" in current.output


def test_database_url_from_the_environment(empty_sqlite_url):
    result = run("db", "upgrade", env={"FOLDERTRACK_DATABASE_URL": empty_sqlite_url})
    assert result.exit_code == 0, result.output


def test_commands_refuse_an_out_of_date_schema(empty_database_url):
    open_database(empty_database_url, check_schema=False).dispose()  # an empty database that exists
    if empty_database_url.startswith("sqlite"):
        Path(make_url(empty_database_url).database).touch()
    current = run("db", "current", "--database-url", empty_database_url)
    assert current.exit_code == 78  # not current
    assert "run `foldertrack db upgrade`" in current.output

    for args in (["activities"], ["records", "list"], ["records", "import", str(DATA / "records.csv")]):
        result = run(*args, "--database-url", empty_database_url)
        assert result.exit_code == 78, args
        assert result.output.strip().splitlines() == [
            "error: database schema is at nothing (empty database), "
            f"this foldertrack needs {head_revision()}: run `foldertrack db upgrade`"
        ]


def test_unreachable_database_exits_75_without_the_password():
    result = run("db", "upgrade", "--database-url", "postgresql+psycopg://ft:hunter2@127.0.0.1:1/ft")
    assert result.exit_code == 75
    assert "hunter2" not in result.output
    assert result.output.startswith("error: cannot connect to postgresql+psycopg://ft:***@127.0.0.1:1/ft")
    assert len(result.output.strip().splitlines()) == 1


def test_records_import_and_list(database_url):
    result = run("records", "import", str(DATA / "records.csv"), "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "5 records (5 created, 0 updated, 0 unchanged)" in result.output

    again = run("records", "import", str(DATA / "records.csv"), "--database-url", database_url)
    assert "(0 created, 0 updated, 5 unchanged)" in again.output

    listed = run("records", "list", "--json", "--type", "account", "--database-url", database_url)
    assert listed.exit_code == 0
    assert [(r["id"], r["name"]) for r in json.loads(listed.output)] == [
        ("acc-001", "Contoso Ltd"),
        ("acc-002", "Fabrikam Inc"),
    ]
    table = run("records", "list", "--database-url", database_url)
    assert "account:acc-001" in table.output and "info@contoso.example;sales@contoso.example" in table.output


def test_records_import_bad_file_exits_1_naming_each_line(database_url):
    path = DATA / "records_bad.csv"
    result = run("records", "import", str(path), "--database-url", database_url)

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 5
    assert all(line.startswith(f"error: {path}:") for line in lines)
    assert lines[0] == f"error: {path}:3: record type 'widget' is not one of " + ", ".join(RECORD_TYPES)


def test_activities_json_and_filters(database_url):
    track(database_url, "<a@x>", "alice@contoso.example", RecordRef("account", "acc-001", "Contoso"), "Quote")
    track(database_url, "<b@x>", "bob@contoso.example", RecordRef("contact", "con-1"), "Hi")
    track(database_url, "<c@x>", "alice@contoso.example", None, "No record")

    result = run("activities", "--json", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data) == 3
    first = next(a for a in data if a["message_id"] == "<a@x>")
    assert {
        k: first[k] for k in ("subject", "mailbox", "regarding_type", "regarding_id", "state", "folder")
    } == {
        "subject": "Quote",
        "mailbox": "alice@contoso.example",
        "regarding_type": "account",
        "regarding_id": "acc-001",
        "state": "tracked",
        "folder": "Inbox/Customers",
    }
    assert datetime.fromisoformat(first["tracked_at"]).utcoffset().total_seconds() == 0
    assert first["parties"] == [
        {"role": "from", "address": "bob@contoso.example", "name": None, "record": None}
    ]

    by_record = json.loads(
        run("activities", "--json", "--record", "account:acc-001", "--database-url", database_url).output
    )
    assert [a["message_id"] for a in by_record] == ["<a@x>"]
    by_mailbox = json.loads(
        run(
            "activities", "--json", "--mailbox", "Alice@Contoso.example", "--database-url", database_url
        ).output
    )
    assert sorted(a["message_id"] for a in by_mailbox) == ["<a@x>", "<c@x>"]


def test_activities_table(database_url):
    assert run("activities", "--database-url", database_url).output.strip() == "no activities"
    track(database_url, "<a@x>", "alice@contoso.example", RecordRef("account", "acc-001", "Contoso"), "Quote")

    result = run("activities", "--database-url", database_url)
    header, row = result.output.strip().splitlines()
    assert header.split() == ["TRACKED", "(UTC)", "MAILBOX", "FOLDER", "REGARDING", "STATE", "SUBJECT"]
    assert "account:acc-001 (Contoso)" in row and "Quote" in row


@pytest.mark.parametrize("record", ["acc-001", "widget:1"])
def test_activities_bad_record_option_is_a_usage_error(sqlite_url, record):
    result = run("activities", "--record", record, "--database-url", sqlite_url)
    assert result.exit_code == 2
    assert "--record" in result.output
