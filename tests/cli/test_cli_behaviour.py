"""A CLI that never surprises a script: read-only commands create nothing, one rule for relative SQLite
paths, global options before or after the sub-command, ``$FOLDERTRACK_DATABASE_URL`` everywhere, quiet
broken pipes, exit codes that mean something, paging, ``--version`` and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import make_url

from foldertrack import __version__
from foldertrack.cli import main
from foldertrack.config import load_config
from foldertrack.config import loader as config_loader
from foldertrack.model import Activity, RecordRef
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state.database import head_revision, open_database, upgrade_database

READ_ONLY = (
    ["status"],
    ["activities"],
    ["conflicts"],
    ["explain", "<x@y>", "--offline"],
    ["records", "list"],
    ["db", "current"],
)


@pytest.fixture
def cli(clean_config_env, monkeypatch, tmp_path):
    monkeypatch.setattr(config_loader, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "foldertrack.toml")
    monkeypatch.delenv("FOLDERTRACK_DATABASE_URL", raising=False)

    def invoke(*args: str, env: dict[str, str | None] | None = None):
        result = CliRunner().invoke(main, list(args), env=env)
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    return invoke


def add_activities(url: str, count: int) -> None:
    engine = open_database(url)
    try:
        sink = SqlActivitySink(engine)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(count):
            sink.upsert(
                Activity(
                    key=f"mid:<m{i:04d}@x>",
                    mailbox="alice@example.com",
                    folder_id="F1",
                    folder_path="Inbox/Customers",
                    message_id=f"<m{i:04d}@x>",
                    subject=f"mail {i:04d}",
                    direction="incoming",
                    regarding=RecordRef("account", "acc-1"),
                    sent_at=start + timedelta(minutes=i),
                )
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_read_only_commands_never_create_a_database(cli, tmp_path, args):
    missing = tmp_path / "typo" / "state.db"
    url = f"sqlite:///{missing}"
    result = cli(*args, "--database-url", url)
    assert result.exit_code == 78, result.output
    assert result.stderr.strip() == (
        f"error: database {url} does not exist (no file {missing}): check database.url or --database-url; "
        "`foldertrack db upgrade` creates it"
    )
    assert not missing.parent.exists()


def test_relative_sqlite_path_in_the_config_is_relative_to_the_config_file(cli, tmp_path, monkeypatch):
    etc = tmp_path / "etc" / "foldertrack"
    etc.mkdir(parents=True)
    config = etc / "foldertrack.toml"
    config.write_text('[database]\nurl = "sqlite:///state/ft.db"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(config).database.url == f"sqlite:///{etc / 'state' / 'ft.db'}"
    result = cli("db", "upgrade", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert (etc / "state" / "ft.db").is_file()
    assert not (elsewhere / "state").exists()
    # on the command line a relative path is relative to the current directory, like any path there
    assert cli("db", "upgrade", "--database-url", "sqlite:///here.db").exit_code == 0
    assert (elsewhere / "here.db").is_file()


def test_absolute_and_memory_sqlite_urls_are_unchanged(tmp_path):
    for url in ("sqlite:////var/lib/ft.db", "sqlite://", "sqlite:///:memory:", "postgresql+psycopg://h/db"):
        config = tmp_path / "c.toml"
        config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
        assert load_config(config, env={}).database.url == url


def test_global_options_before_or_after_the_command(cli, sqlite_url):
    add_activities(sqlite_url, 2)
    forms = [
        ["--json", "activities", "--database-url", sqlite_url],
        ["activities", "--json", "--database-url", sqlite_url],
        ["--database-url", sqlite_url, "--json", "activities"],
        [f"--database-url={sqlite_url}", "activities", "--json", "--debug"],
        ["--debug", "activities", "--database-url", sqlite_url, "--json"],
    ]
    outputs = []
    for args in forms:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(json.loads(result.stdout))
    assert all(o == outputs[0] for o in outputs) and len(outputs[0]) == 2
    nested = cli("--json", "db", "current", "--database-url", sqlite_url)
    assert json.loads(nested.stdout)["state"] == "current"
    status = cli("--json", "--database-url", sqlite_url, "status")
    assert status.exit_code == 0 and "mailboxes" in json.loads(status.stdout)


def test_debug_after_the_command_shows_the_traceback(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'nope.db'}"
    quiet = cli("activities", "--database-url", url)
    assert quiet.exit_code == 78 and "Traceback" not in quiet.output
    result = CliRunner().invoke(main, ["activities", "--database-url", url, "--debug"])
    assert result.exception is not None and "does not exist" in str(result.exception)


def test_a_global_option_the_command_does_not_take_is_a_usage_error(cli):
    result = cli("--json", "run")
    assert result.exit_code == 2
    assert "--json does not apply to `foldertrack run`" in result.stderr


def test_database_url_from_the_environment_everywhere(cli, sqlite_url, tmp_path):
    add_activities(sqlite_url, 1)
    env = {"FOLDERTRACK_DATABASE_URL": sqlite_url}
    for args in (
        ["activities", "--json"],
        ["status", "--json"],
        ["conflicts", "--json"],
        ["records", "list"],
    ):
        result = cli(*args, env=env)
        assert result.exit_code == 0, (args, result.output)
    assert len(json.loads(cli("activities", "--json", env=env).stdout)) == 1
    # the configuration sees it too, so `run` and every other command use the same database
    config = tmp_path / "c.toml"
    config.write_text('[database]\nurl = "sqlite:////elsewhere.db"\n', encoding="utf-8")
    assert load_config(config, env=env).database.url == sqlite_url
    assert load_config(config, env={}).database.url == "sqlite:////elsewhere.db"


def test_db_current_exits_non_zero_unless_current(cli, empty_sqlite_url):
    Path(make_url(empty_sqlite_url).database).parent.mkdir(parents=True)
    Path(make_url(empty_sqlite_url).database).touch()
    behind = cli("db", "current", "--database-url", empty_sqlite_url)
    assert behind.exit_code == 78
    assert f"needs {head_revision()}: run `foldertrack db upgrade`" in behind.stdout
    as_json = json.loads(cli("db", "current", "--json", "--database-url", empty_sqlite_url).stdout)
    assert as_json["state"] == "behind" and as_json["revision"] is None and as_json["head"] == head_revision()
    upgrade_database(empty_sqlite_url)
    current = cli("db", "current", "--database-url", empty_sqlite_url)
    assert current.exit_code == 0 and "(current)" in current.stdout


def test_activities_default_limit_and_paging(cli, sqlite_url):
    add_activities(sqlite_url, 60)
    first = cli("activities", "--database-url", sqlite_url)
    assert first.exit_code == 0
    rows = first.stdout.strip().splitlines()[1:]
    assert len(rows) == 50 and "mail 0059" in rows[0]
    assert first.stderr.strip() == "note: showing 1-50 of 60; next page: --offset 50 (or --all)"
    second = cli("activities", "--offset", "50", "--json", "--database-url", sqlite_url)
    assert [a["subject"] for a in json.loads(second.stdout)] == [f"mail {i:04d}" for i in range(9, -1, -1)]
    assert second.stderr == ""
    everything = cli("activities", "--all", "--json", "--database-url", sqlite_url)
    assert len(json.loads(everything.stdout)) == 60 and everything.stderr == ""
    page = cli("activities", "--limit", "5", "--offset", "10", "--json", "--database-url", sqlite_url)
    assert [a["subject"] for a in json.loads(page.stdout)] == [f"mail {i:04d}" for i in range(49, 44, -1)]
    assert "showing 11-15 of 60; next page: --offset 15" in page.stderr


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"foldertrack, version {__version__}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_script(shell):
    result = CliRunner().invoke(
        main, [], prog_name="foldertrack", env={"_FOLDERTRACK_COMPLETE": f"{shell}_source"}
    )
    assert result.exit_code == 0
    assert "_FOLDERTRACK_COMPLETE" in result.stdout


def test_shell_completion_completes_commands():
    env = {"_FOLDERTRACK_COMPLETE": "bash_complete", "COMP_WORDS": "foldertrack ex", "COMP_CWORD": "1"}
    result = CliRunner().invoke(main, [], prog_name="foldertrack", env=env)
    assert result.stdout.split() == ["plain,explain"]


def test_output_piped_into_head_ends_quietly(sqlite_url, tmp_path):
    csv = tmp_path / "many.csv"
    rows = [
        f"account,acc-{i:05d},Account number {i:05d} with a long name,{i},a{i}@example.com"
        for i in range(3000)
    ]
    csv.write_text("type,id,name,number,emails\n" + "\n".join(rows) + "\n", encoding="utf-8")
    env = {**os.environ, "FOLDERTRACK_DATABASE_URL": sqlite_url}
    imported = subprocess.run(
        [sys.executable, "-m", "foldertrack", "records", "import", str(csv)], env=env, capture_output=True
    )
    assert imported.returncode == 0, imported.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "foldertrack", "records", "list"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"RECORD")
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(60) == 0
    assert proc.stderr.read() == b""


def test_config_check_json_masks_secrets(cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        '[exchange]\nendpoint = "https://mail.example.com/EWS/Exchange.asmx"\n'
        '[database]\nurl = "postgresql+psycopg://ft:hunter2@db.example/ft"\n'
        '[watch]\npoll_interval = "90s"\n',
        encoding="utf-8",
    )
    result = cli("--json", "config", "check", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.stdout
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["source"] == str(config)
    assert data["settings"]["database.url"] == {
        "value": "postgresql+psycopg://ft:***@db.example/ft",
        "default": False,
    }
    assert data["settings"]["watch.poll_interval"] == {"value": "1m30s", "default": False}
    assert data["settings"]["watch.workers"]["default"] is True
    assert data["secrets"]["exchange.password"]["set"] is False
    assert any("username" in w for w in data["warnings"])


def test_config_check_json_invalid(cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[watch]\npoll_intervall = "90s"\n', encoding="utf-8")
    result = cli("config", "check", "--json", "--config", str(config))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and "did you mean watch.poll_interval?" in data["problems"][0]
