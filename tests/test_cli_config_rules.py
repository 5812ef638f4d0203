"""``foldertrack config check`` and ``foldertrack rules check`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from foldertrack.cli import main
from foldertrack.config import loader as config_module

REPO = Path(__file__).resolve().parents[1]
VALID = "mailboxes:\n  - address: alice@example.com\n    folders:\n      Inbox/Contoso: account:1\n"


@pytest.fixture
def run(clean_config_env, monkeypatch, tmp_path):
    """Invoke the CLI with a clean environment and no readable default config file."""
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "foldertrack.toml")

    def invoke(*args: str, env: dict[str, str] | None = None):
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert "Traceback" not in result.output + result.stderr
        return result

    return invoke


# --------------------------------------------------------------------------- config check


def test_config_check_prints_effective_config_with_secrets_masked(run, write_config, tmp_path):
    (tmp_path / "pw").write_text("hunter2\n")
    path = write_config(
        exchange={
            "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
            "username": "svc@example.com",
            "password_file": str(tmp_path / "pw"),
        },
        database={"url": "postgresql+psycopg://ft:dbsecret@db/ft"},
        watch={"poll_interval": "90s"},
    )
    result = run("config", "check", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "dbsecret" not in result.output
    assert f"# password: *** (from file {tmp_path / 'pw'})" in result.stdout
    assert 'url = "postgresql+psycopg://ft:***@db/ft"' in result.stdout
    assert 'poll_interval = "1m30s"\n' in result.stdout
    assert "workers = 4  # default" in result.stdout
    assert result.stderr == ""


def test_config_check_warns_about_what_is_missing_to_connect(run, write_config):
    result = run("config", "check", "--config", str(write_config(watch={"workers": 2})))
    assert result.exit_code == 0
    assert "warning: exchange.endpoint is not set" in result.stderr
    assert "warning: exchange password is not set (looked in" in result.stderr


def test_config_check_reads_env_and_option_wins(run, write_config):
    env_file = write_config(name="env.toml", sink={"name": "from-env"})
    option_file = write_config(name="option.toml", sink={"name": "from-option"})
    env = {"FOLDERTRACK_CONFIG": str(env_file)}
    assert 'name = "from-env"' in run("config", "check", env=env).stdout
    assert 'name = "from-option"' in run("config", "check", "--config", str(option_file), env=env).stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[watch]\npoll_intervall = "60s"\n',
         ":2: unknown key watch.poll_intervall (did you mean watch.poll_interval?)"),
        ('[watch]\npoll_interval = "often"\n', ":2: watch.poll_interval: 'often' is not a duration"),
        ("[exchange]\nverify_tls = 1\n", ":2: exchange.verify_tls: must be true or false, not integer 1"),
        ("[exchange\n", ": invalid TOML"),
    ],
)  # fmt: skip
def test_config_check_invalid_exits_1(run, write_config, text, message):
    path = write_config(text)
    result = run("config", "check", "--config", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}{message}")


def test_config_check_missing_file(run, tmp_path):
    result = run("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'nope.toml'}: configuration file not found\n"
    result = run("config", "check")
    assert result.exit_code == 1
    assert "configuration file not found (use --config or $FOLDERTRACK_CONFIG)" in result.stderr


# --------------------------------------------------------------------------- rules check


def test_rules_check_valid_dir_prints_mappings(run, write_rules, rules_dir):
    write_rules("team.yaml", VALID)
    result = run("rules", "check", str(rules_dir))
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    columns = ["MAILBOX", "FOLDER", "RECORD", "SUBFOLDERS", "BACKFILL", "ON_LEAVE", "DUPLICATES", "SOURCE"]
    assert header.split() == columns
    source = f"{rules_dir / 'team.yaml'}:4"
    assert row.split() == [
        "alice@example.com",
        "Inbox/Contoso",
        "account:1",
        "no",
        "yes",
        "keep",
        "first_wins",
        source,
    ]
    assert "1 folder rule(s), 1 mailbox(es), 1 file(s): OK" in result.stdout


def test_rules_check_invalid_lists_every_problem(run, write_rules, rules_dir):
    a = write_rules("a.yaml", "mailboxes:\n  - address: alice\n    folders:\n      Inbox/A: account\n")
    b = write_rules("b.yaml", b"\xff\xfe")
    result = run("rules", "check", str(rules_dir))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {a}:2: mailbox address 'alice' is not an email address like user@example.com",
        f"error: {a}:4: record reference 'account' is not TYPE:ID (a record is TYPE:ID, a lookup "
        "{type: TYPE, name: NAME}, or null)",
        f"error: {b}:1: file is not UTF-8 text (byte 0xff)",
    ]


def test_rules_check_uses_configured_dir_only_without_argument(
    run, write_config, write_rules, rules_dir, tmp_path
):
    write_rules("team.yaml", VALID)
    config = write_config(rules={"dir": "rules"})  # relative to the config file: tmp_path/rules
    assert run("rules", "check", "--config", str(config)).exit_code == 0
    assert run("rules", "check", env={"FOLDERTRACK_CONFIG": str(config)}).exit_code == 0

    broken = write_config("[rules]\ndri = 'x'\n", name="broken.toml")
    result = run("rules", "check", "--config", str(broken))
    assert result.exit_code == 78  # a config error (EX_CONFIG), not a rule problem
    assert "unknown key rules.dri (did you mean rules.dir?)" in result.stderr
    # with DIR given, the configuration is not read at all
    assert run("rules", "check", str(rules_dir), env={"FOLDERTRACK_CONFIG": str(broken)}).exit_code == 0


def test_rules_check_without_config_file_uses_default_dir(run, tmp_path):
    result = run("rules", "check")
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'etc' / 'rules'}:0: rules directory does not exist\n"


def test_shipped_example_passes_rules_check(run):
    result = run("rules", "check", str(REPO / "rules"))
    assert result.exit_code == 0, result.output
    assert "example.yaml:" in result.stdout


def test_rules_check_missing_dir_argument(run, tmp_path):
    result = run("rules", "check", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert "rules directory does not exist" in result.stderr
