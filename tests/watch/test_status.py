"""``foldertrack status`` through the real CLI: per-mailbox mode, times, counts, backlog, dead letters and
drift warnings, as text and as ``--json``; and migration 0002 on an existing database."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from alembic import command
from click.testing import CliRunner
from sqlalchemy import insert, select

from foldertrack.cli import main
from foldertrack.cli.status_cmd import render_text
from foldertrack.ops.status import MAILBOX_KEYS, collect_status
from foldertrack.simulator import MailSpec
from foldertrack.state import watch_store as store
from foldertrack.state.database import alembic_config, head_revision, open_database, upgrade_database
from foldertrack.state.schema import dead_letters, subscription_health
from foldertrack.targets import RuleIssue
from tests.watch.conftest import ALICE, BOB

TOTAL_KEYS = {"mailboxes", "folders", "tracked", "backlog", "dead_letters", "warnings", "modes",
              "outbox_backlog", "delivery_dead_letters"}  # fmt: skip
FOLDER_KEYS = {"path", "configured_path", "status", "rule", "tracked", "last_sync_at", "backfill"}
WARNING_KEYS = {"kind", "rule", "path", "message", "since"}


def run_status(database_url: str, *args: str):
    """``foldertrack status --database-url URL ARGS`` through click's CliRunner; fails on a non-zero exit."""
    result = CliRunner().invoke(
        main,
        ["status", "--database-url", database_url, *args],
        env={"FOLDERTRACK_DATABASE_URL": None, "FOLDERTRACK_CONFIG": None},
    )
    assert result.exit_code == 0, result.output
    return result.output


def status_json(database_url: str) -> dict:
    return json.loads(run_status(database_url, "--json"))


def mailbox_status(database_url: str, mailbox: str) -> dict:
    return next(m for m in status_json(database_url)["mailboxes"] if m["mailbox"] == mailbox)


def warnings_of(engine, mailbox: str, kind: str | None = None) -> list[dict]:
    """The mailbox's warnings as ``status`` reports them (read in-process: cheap enough to poll)."""
    for box in collect_status(engine)["mailboxes"]:
        if box["mailbox"] == mailbox:
            return [w for w in box["warnings"] if kind is None or w["kind"] == kind]
    return []


RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Missing: account:acc-fabrikam
"""


def test_status_of_a_running_watcher_text_and_json(harness):
    mb = harness.add_mailbox(ALICE)
    mb.create_folder("Inbox/Customers/Contoso")
    harness.write_rules(RULES)
    harness.start_watcher()
    item = harness.sim.deliver(ALICE, MailSpec(subject="status mail", to=[ALICE]), folder="Inbox")
    mb.move_item(item, "Inbox/Customers/Contoso")
    harness.wait_tracked("status mail")
    harness.wait_for(
        lambda: warnings_of(harness.engine, ALICE, "folder_not_found"), what="the missing folder's warning"
    )

    def streaming_and_idle():
        box = mailbox_status(harness.database_url, ALICE)
        return box if box["mode"] == "streaming" and box["last_event_at"] and box["backlog"] == 0 else None

    box = harness.wait_for(streaming_and_idle, what="alice streaming, idle, with a last event time")
    report = status_json(harness.database_url)
    assert set(report) >= {"mailboxes", "dead_letters", "totals", "sinks", "delivery_dead_letters"}
    assert report["sinks"] == [] and report["delivery_dead_letters"] == []  # the sql sink: no outbox
    assert set(report["totals"]) >= TOTAL_KEYS
    assert list(box) == list(MAILBOX_KEYS)
    assert box["tracked"] == 1 and box["backlog"] == 0 and box["dead_letters"] == 0
    assert box["last_sync_at"] is not None
    (folder,) = box["folders"]
    assert set(folder) == FOLDER_KEYS
    assert folder["path"] == "Inbox/Customers/Contoso" and folder["status"] == "active"
    assert folder["tracked"] == 1 and folder["rule"].endswith("rules.yaml:5")
    (warning,) = box["warnings"]
    assert set(warning) == WARNING_KEYS
    assert warning["kind"] == "folder_not_found" and warning["path"] == "Inbox/Missing"
    assert warning["rule"].endswith("rules.yaml:6")

    text = run_status(harness.database_url)
    assert text.splitlines()[0].startswith("1 mailbox(es), 1 folder(s): 1 streaming; 1 tracked")
    assert ALICE in text
    assert "mode        streaming" in text
    assert "FOLDER" in text and "Inbox/Customers/Contoso" in text
    assert "warning:" in text and "'Inbox/Missing' does not exist [folder_not_found]" in text


def test_status_shows_backlog_dead_letters_and_idle_mailboxes(sqlite_url):
    engine = open_database(sqlite_url)
    try:
        store.set_health(engine, ALICE, mode="polling", backlog=7, last_error="ErrorServerBusy: slow down")
        store.set_health(engine, BOB, mode="stopped")
        with store.writing(engine) as conn:
            conn.execute(
                insert(dead_letters).values(
                    mailbox=ALICE,
                    folder_id="F1",
                    item_id="I1",
                    subject="poison",
                    error="PermanentSinkError: bad",
                    attempts=3,
                    status="dead",
                )
            )
            store.replace_rule_issues(
                conn,
                BOB,
                [
                    RuleIssue(
                        BOB, "rules.yaml:9", "Inbox/Leads/*", "no_match", "pattern matches no folder yet"
                    )
                ],
            )
    finally:
        engine.dispose()

    report = status_json(sqlite_url)
    alice, bob = report["mailboxes"]
    assert (alice["mailbox"], alice["mode"], alice["backlog"], alice["dead_letters"]) == (
        ALICE,
        "polling",
        7,
        1,
    )
    assert alice["last_error"] == "ErrorServerBusy: slow down"
    assert bob["mode"] == "stopped" and bob["warnings"][0]["kind"] == "no_match"
    assert report["totals"]["backlog"] == 7 and report["totals"]["warnings"] == 1
    assert report["dead_letters"][0]["subject"] == "poison"

    text = run_status(sqlite_url)
    assert "backlog 7" in text and "dead letters 1" in text
    assert "last error  ErrorServerBusy: slow down" in text
    assert "#1 alice@example.com poison: PermanentSinkError: bad (3 attempts)" in text
    assert "rules.yaml:9: pattern matches no folder yet [no_match]" in text


def test_status_of_an_empty_database(sqlite_url):
    assert status_json(sqlite_url)["totals"]["mailboxes"] == 0
    assert run_status(sqlite_url).startswith("0 mailbox(es), 0 folder(s): none;")


def test_status_refuses_an_out_of_date_schema(empty_sqlite_url):
    result = CliRunner().invoke(
        main, ["status", "--database-url", empty_sqlite_url], env={"FOLDERTRACK_DATABASE_URL": None}
    )
    assert result.exit_code != 0
    assert "foldertrack db upgrade" in result.output


def test_status_as_a_subprocess_with_a_config_file(sqlite_url, tmp_path):
    engine = open_database(sqlite_url)
    try:
        store.set_health(engine, ALICE, mode="streaming", backlog=2)
    finally:
        engine.dispose()
    config = tmp_path / "foldertrack.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "foldertrack", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mailboxes"][0]["backlog"] == 2


def test_text_shows_relative_times():
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    report = {
        "mailboxes": [
            {
                "mailbox": ALICE,
                "mode": "streaming",
                "instance": "host-a",
                "last_event_at": (now - timedelta(seconds=12)).isoformat(),
                "last_sync_at": (now - timedelta(hours=3)).isoformat(),
                "last_error": None,
                "backlog": 0,
                "tracked": 0,
                "dead_letters": 0,
                "retrying": 0,
                "folders": [],
                "warnings": [],
            }
        ],
        "dead_letters": [],
        "totals": {
            "mailboxes": 1,
            "folders": 0,
            "tracked": 0,
            "backlog": 0,
            "dead_letters": 0,
            "warnings": 0,
            "modes": {"streaming": 1},
        },
    }
    lines = render_text(report, now)
    assert "  mode        streaming (instance host-a)" in lines
    assert "  last event  2026-11-22 11:59:48Z (12s ago)" in lines
    assert "  last sync   2026-11-22 09:00:00Z (3h ago)" in lines


def test_migration_0002_keeps_existing_health_rows(empty_database_url):
    """`foldertrack db upgrade` from 0001 adds rule_issues and backlog (0 for existing rows)."""
    engine = open_database(empty_database_url, check_schema=False)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.exec_driver_sql(
                "INSERT INTO subscription_health (mailbox, mode, consecutive_failures, updated_at) "
                "VALUES ('old@example.com', 'streaming', 0, CURRENT_TIMESTAMP)"
            )
    finally:
        engine.dispose()

    result = CliRunner().invoke(
        main, ["db", "upgrade", "--database-url", empty_database_url], env={"FOLDERTRACK_DATABASE_URL": None}
    )
    assert result.exit_code == 0, result.output
    assert f"from 0001 to {head_revision()}" in result.output
    assert upgrade_database(empty_database_url) == (head_revision(), head_revision())
    engine = open_database(empty_database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(subscription_health)).one()
        assert row.backlog == 0
        store.set_health(engine, "old@example.com", backlog=3)
        with store.writing(engine) as conn:
            store.replace_rule_issues(
                conn,
                "old@example.com",
                [RuleIssue("old@example.com", "r.yaml:1", "X", "folder_not_found", "m")],
            )
        box = collect_status(engine)["mailboxes"][0]
        assert box["backlog"] == 3 and box["warnings"][0]["path"] == "X"
    finally:
        engine.dispose()


def test_a_persisting_rule_issue_keeps_its_first_seen_time(sqlite_url):
    missing = RuleIssue(
        ALICE, "r.yaml:3", "Inbox/Gone", "folder_not_found", "folder 'Inbox/Gone' does not exist"
    )
    no_match = RuleIssue(ALICE, "r.yaml:5", "Inbox/P/*", "no_match", "pattern matches no folder yet")
    engine = open_database(sqlite_url)
    try:
        with store.writing(engine) as conn:
            store.replace_rule_issues(conn, ALICE, [missing, no_match])
        first = {w["path"]: w["since"] for w in warnings_of(engine, ALICE)}
        with store.writing(engine) as conn:  # the next resolve: one problem fixed, the other still there
            store.replace_rule_issues(conn, ALICE, [missing])
        (warning,) = warnings_of(engine, ALICE)
        assert warning["since"] == first["Inbox/Gone"]
        with store.writing(engine) as conn:
            store.replace_rule_issues(conn, ALICE, [])
        assert warnings_of(engine, ALICE) == []
    finally:
        engine.dispose()
