"""``foldertrack folders MAILBOX``: the folder tree from the simulator, annotated with the rules."""

from __future__ import annotations

import json

from tests.cli.conftest import ALICE


def test_folders_marks_tracked_folders_and_why_others_are_not(world):
    world.deliver("quote", "Inbox/Customers/Contoso")
    world.deliver("other quote", "Inbox/Customers/Contoso")
    result = world.run("folders", ALICE)
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line for line in result.output.splitlines()}
    contoso = lines["Inbox/Customers/Contoso"]
    assert " 2 " in contoso and "account:acc-contoso" in contoso and "rules.yaml:4" in contoso
    assert "account:acc-northwind" in lines["Inbox/Accounts/Northwind Traders"]
    assert "no record found for folder name 'Unknown Ltd'" in lines["Inbox/Accounts/Unknown Ltd"]
    assert "not a mail folder" in lines["Calendar"]
    assert "tracked by 2 rule(s)" in result.output


def test_folders_reports_a_rule_typo_with_did_you_mean(world):
    world.write_rules(
        """
        mailboxes:
          - address: alice@example.com
            folders:
              Inbox/Custmers/Contoso: account:acc-contoso
        """
    )
    result = world.run("folders", ALICE)
    assert result.exit_code == 0, result.output
    assert (
        "rules.yaml:4: error: folder 'Inbox/Custmers/Contoso' does not exist "
        "(did you mean 'Inbox/Customers/Contoso'" in result.output
    )
    assert "0 tracked by 1 rule(s)" in result.output


def test_folders_json_before_or_after_the_command(world):
    world.deliver("quote", "Inbox/Customers/Contoso")
    before = world.run("--json", "folders", ALICE)
    after = world.run("folders", ALICE, "--json")
    assert before.exit_code == after.exit_code == 0, before.output
    data = json.loads(before.stdout)
    assert json.loads(after.stdout) == data
    assert data["mailbox"] == ALICE and data["missing"] == []
    contoso = next(f for f in data["folders"] if f["path"] == "Inbox/Customers/Contoso")
    assert (
        contoso["items"] == 1 and contoso["tracked"] and contoso["record"] == "account:acc-contoso (Contoso)"
    )
    assert contoso["rule"].endswith("rules.yaml:4") and contoso["via"] == "rule"
    assert set(contoso) == {
        "path",
        "id",
        "items",
        "children",
        "mail",
        "tracked",
        "rule",
        "record",
        "via",
        "note",
    }


def test_folders_unknown_mailbox_is_an_error_naming_it(world):
    result = world.run("folders", "ghost@example.com")
    assert result.exit_code == 1  # Exchange answered: asking again will not help
    assert result.stderr.strip() == (
        "error: ghost@example.com: reading the folder tree failed: ErrorNonExistentMailbox: "
        "No mailbox with such guid or SMTP address: ghost@example.com"
    )


def test_folders_wrong_password_is_one_error_line(world):
    result = world.run("folders", ALICE, env={"FOLDERTRACK_EXCHANGE_PASSWORD": "wrong"})
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: alice@example.com: reading the folder tree failed: UnauthorizedError")
    assert "wrong" not in line


def test_folders_without_exchange_settings_is_a_config_error(world, tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[database]\nurl = "{world.database_url}"\n', encoding="utf-8")
    result = world.run("folders", ALICE, "--config", str(bare))
    assert result.exit_code == 78
    assert "exchange.endpoint" in result.stderr


def test_folders_with_exchange_unreachable_exits_75(world, tmp_path):
    config = tmp_path / "down.toml"
    config.write_text(
        world.config.read_text(encoding="utf-8").replace(
            world.sim.url, "http://127.0.0.1:9/EWS/Exchange.asmx"
        ),
        encoding="utf-8",
    )
    result = world.run("folders", ALICE, "--config", str(config))
    assert result.exit_code == 75  # temporary: try again later
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: alice@example.com: reading the folder tree failed: ")
