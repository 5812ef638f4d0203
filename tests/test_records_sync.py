"""``records sync``: accounts, contacts and leads from the simulated Dataverse into the record directory,
full and by delta link, through MSAL and requests over verified TLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from foldertrack.cli import main as cli
from foldertrack.crm.connect import connect
from foldertrack.crm.records_sync import RecordsSyncer, RecordsSyncTimer
from foldertrack.model import RecordRef
from foldertrack.state.records import RecordDirectory
from foldertrack.state.records_sync import SyncedRecords
from foldertrack.state.schema import records_sync
from foldertrack.testing.harness import wait_until

DATA = Path(__file__).parent / "data"


@pytest.fixture
def engine(database_engine):
    """SQLite, and PostgreSQL when ``FOLDERTRACK_TEST_DATABASE_URL`` names one."""
    return database_engine


@pytest.fixture
def syncer(dataverse_config, engine):
    client = connect(dataverse_config)
    yield RecordsSyncer(client, engine, page_size=1)
    client.close()


@pytest.fixture
def crm(dataverse):
    """Two accounts, two contacts, one lead."""
    c = dataverse.crm
    ids = {
        "contoso": c.add_account("Contoso Ltd", "C-1001", "info@contoso.example"),
        "fabrikam": c.add_account("Fabrikam Inc"),
        "alice": c.add_contact("Alice Smith", "Alice@Contoso.example"),
        "bob": c.add_contact("Bob Jones", "bob@fabrikam.example"),
        "dana": c.add_lead("Dana Lee", "dana@lee.example", company="Lee & Co"),
    }
    return c, ids


def counts(report, record_type):
    t = next(t for t in report.types if t.type == record_type)
    return t.mode, t.added, t.changed, t.deleted, t.total


def test_full_sync_fills_the_directory_page_by_page(syncer, crm, engine):
    _, ids = crm

    report = syncer.sync()

    assert counts(report, "account") == ("full", 2, 0, 0, 2)
    assert counts(report, "contact") == ("full", 2, 0, 0, 2)
    assert counts(report, "lead") == ("full", 1, 0, 0, 1)
    assert next(t for t in report.types if t.type == "account").pages >= 2  # odata.maxpagesize=1
    directory = RecordDirectory(engine)
    entries = {str(e.ref): e for e in directory.list()}
    contoso = entries[f"account:{ids['contoso']}"]
    assert (contoso.ref.name, contoso.number, contoso.emails) == (
        "Contoso Ltd",
        "C-1001",
        ("info@contoso.example",),
    )
    assert entries[f"lead:{ids['dana']}"].ref.name == "Dana Lee"


def test_synced_records_are_usable_at_once_by_rules_and_parties(syncer, crm, engine):
    _, ids = crm
    syncer.sync()
    directory = RecordDirectory(engine)

    assert directory.by_address("alice@contoso.example") == RecordRef("contact", ids["alice"])
    assert directory.find("account", "contoso ltd") == RecordRef("account", ids["contoso"])
    assert directory.find(None, "C-1001", by="number") == RecordRef("account", ids["contoso"])


def test_delta_sync_brings_added_changed_and_deleted_records(syncer, crm, engine):
    c, ids = crm
    syncer.sync()
    northwind = c.add_account("Northwind Traders", "N-1", "hello@northwind.example")
    c.update_record("contact", ids["alice"], emailaddress1="alice@new.example")
    c.delete_record("lead", ids["dana"])

    report = syncer.sync()

    assert counts(report, "account") == ("delta", 1, 0, 0, 3)
    assert counts(report, "contact") == ("delta", 0, 1, 0, 2)
    assert counts(report, "lead") == ("delta", 0, 0, 1, 0)
    directory = RecordDirectory(engine)
    assert directory.by_address("hello@northwind.example") == RecordRef("account", northwind)
    assert directory.by_address("alice@new.example") == RecordRef("contact", ids["alice"])
    assert directory.by_address("alice@contoso.example") is None
    assert directory.list("lead") == []
    assert syncer.sync().types[0].mode == "delta"  # nothing new: still by delta link
    assert not syncer.sync().changed


def test_a_refused_delta_link_falls_back_to_a_full_read(syncer, crm, engine, caplog):
    c, ids = crm
    syncer.sync()
    c.delete_record("account", ids["fabrikam"])
    with engine.begin() as conn:  # a delta link Dataverse no longer accepts
        conn.execute(
            update(records_sync)
            .where(records_sync.c.record_type == "account")
            .values(delta_link="accounts?$select=accountid&$deltatoken=expired")
        )

    report = syncer.sync(("account",))

    assert counts(report, "account") == ("full", 0, 0, 1, 1)
    assert "delta link refused" in caplog.text
    assert [e.ref.id for e in RecordDirectory(engine).list("account")] == [ids["contoso"]]


def test_full_resync_never_removes_records_imported_from_csv(syncer, crm, engine):
    RecordDirectory(engine).import_csv(DATA / "records.csv")
    syncer.sync()

    report = syncer.sync(full=True)

    assert counts(report, "account")[3] == 0
    assert RecordDirectory(engine).get(RecordRef("account", "acc-001")) is not None
    assert SyncedRecords(engine).delta_link("account") is not None


def test_records_sync_command_prints_progress_and_json(dataverse, crm, sqlite_url, tmp_path):
    config = tmp_path / "foldertrack.toml"
    config.write_text(
        f'[database]\nurl = "{sqlite_url}"\n\n[dataverse]\nurl = "{dataverse.org_url}"\n'
        f'tenant_id = "{dataverse.tenant}"\nclient_id = "{dataverse.client_id}"\n'
        f'authority = "{dataverse.sim.https_base}"\nca_file = "{dataverse.ca_path}"\n',
        encoding="utf-8",
    )
    env = {"FOLDERTRACK_DATAVERSE_CLIENT_SECRET": dataverse.client_secret}
    runner = CliRunner()

    result = runner.invoke(cli, ["records", "sync", "--config", str(config), "--json"], env=env)

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(t["type"], t["mode"], t["added"], t["total"]) for t in data["types"]] == [
        ("account", "full", 2, 2),
        ("contact", "full", 2, 2),
        ("lead", "full", 1, 1),
    ]
    assert "accounts: page 1 (full)" in result.stderr

    again = runner.invoke(cli, ["records", "sync", "--config", str(config), "--type", "lead"], env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout == "leads (delta): 1 records; 0 added, 0 changed, 0 deleted, 0 unchanged\n"


def test_records_sync_command_with_a_wrong_secret_exits_with_the_reason(dataverse, sqlite_url, tmp_path):
    config = tmp_path / "foldertrack.toml"
    config.write_text(
        f'[database]\nurl = "{sqlite_url}"\n\n[dataverse]\nurl = "{dataverse.org_url}"\n'
        f'tenant_id = "{dataverse.tenant}"\nclient_id = "{dataverse.client_id}"\n'
        f'authority = "{dataverse.sim.https_base}"\nca_file = "{dataverse.ca_path}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli,
        ["records", "sync", "--config", str(config)],
        env={"FOLDERTRACK_DATAVERSE_CLIENT_SECRET": "wrong-secret-value"},
    )

    assert result.exit_code == 75
    assert "AADSTS7000215" in result.output and "wrong-secret-value" not in result.output


def test_the_run_timer_syncs_and_reports_changes(dataverse_config, crm, engine):
    _, ids = crm
    changed = []
    timer = RecordsSyncTimer(
        connect(dataverse_config), engine, interval=3600, on_change=lambda: changed.append(1)
    )
    timer.start()
    try:
        wait_until(lambda: changed, 10, "the first records sync")
    finally:
        timer.stop()

    assert timer.last_error is None
    assert RecordDirectory(engine).by_address("bob@fabrikam.example") == RecordRef("contact", ids["bob"])
