"""``rules check --online``, ``rules preview`` and ``rules suggest`` against the simulator: read-only."""

from __future__ import annotations

import json

from foldertrack.rules import load_rules
from tests.cli.conftest import ALICE

TYPO_RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Custmers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-missing
      Projects:
        record: {{type: account, name: Contoso}}
      Inbox/Accounts/*:
        record: {{type: account, by: name_or_number}}
  - address: ghost@example.com
    folders:
      Inbox: {{record: null}}
"""


def test_check_online_reports_typos_missing_records_patterns_and_mailboxes(world):
    world.write_rules(TYPO_RULES)
    result = world.run("rules", "check", "--online")
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert (
        "rules.yaml:4: error: alice@example.com: folder 'Inbox/Custmers/Contoso' does not exist "
        "(did you mean 'Inbox/Customers/Contoso'?)" in err
    )
    assert (
        "rules.yaml:5: warning: alice@example.com: record account:acc-missing is not in the record directory"
        in err
    )
    assert (
        "rules.yaml:8: warning: alice@example.com: Inbox/Accounts/*: 2 folder(s): Northwind Traders → account:acc-northwind; Unknown Ltd → no record"
        in err
    )
    assert "error: ghost@example.com: cannot open the mailbox: ErrorNonExistentMailbox" in err
    assert (
        "rules.yaml:6: ok: alice@example.com: account with name 'Contoso': account:acc-contoso (Contoso)"
        in result.stdout
    )
    assert "2 error(s), 2 warning(s) (online)" in result.stdout
    for operation in ("CreateItem", "UpdateItem", "MoveItem", "DeleteItem", "CreateFolder", "UpdateFolder"):
        assert world.sim.stats[operation] == 0


def test_check_online_json(world):
    world.write_rules(TYPO_RULES)
    result = world.run("rules", "check", "--online", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and len(data["rules"]) == 5
    typo = next(f for f in data["online"] if f["kind"] == "folder" and f["severity"] == "error")
    assert typo["path"] == "Inbox/Custmers/Contoso" and typo["suggestions"] == ["Inbox/Customers/Contoso"]
    assert typo["rule"].endswith("rules.yaml:4") and typo["mailbox"] == ALICE


def test_check_online_all_good_exits_0(world):
    result = world.run("rules", "check", "--online")
    assert result.exit_code == 0, result.output + result.stderr
    assert "0 warning(s)" not in result.stdout or "OK" in result.stdout
    assert "Inbox/Customers/Contoso: folder found (0 item(s))" in result.stdout


def test_check_online_without_a_database_skips_records_with_a_warning(world, tmp_path):
    result = world.run("rules", "check", "--online", "--database-url", f"sqlite:///{tmp_path / 'nope.db'}")
    assert result.exit_code == 0, result.output
    assert "warning: *: records not checked: database sqlite:///" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_check_offline_json_lists_problems(world):
    world.write_rules("mailboxes:\n  - address: not-an-address\n    folders: {Inbox: account:1}\n")
    result = world.run("rules", "check", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["problems"][0]["line"] == 2


def test_preview_counts_backfill_honouring_the_options(world):
    for i in range(4):
        world.deliver(f"contoso {i}", "Inbox/Customers/Contoso")
    world.deliver("northwind", "Inbox/Accounts/Northwind Traders")
    world.deliver("fabrikam", "Inbox/Customers/Fabrikam")
    world.write_rules(
        f"""
        mailboxes:
          - address: {ALICE}
            folders:
              Inbox/Customers/Contoso: account:acc-contoso
              Inbox/Customers/Fabrikam:
                record: account:acc-fabrikam
                backfill: false
              Inbox/Accounts/*:
                record: {{type: account, by: name_or_number}}
        """
    )
    result = world.run("rules", "preview", "--json", "--sample", "2", "--progress")
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    by_path = {f["path"]: f for f in data["folders"]}
    assert by_path["Inbox/Customers/Contoso"]["backfill"] == 4
    assert by_path["Inbox/Customers/Contoso"]["newest"] == ["contoso 3", "contoso 2"]
    assert by_path["Inbox/Customers/Fabrikam"]["backfill"] == 0
    assert by_path["Inbox/Customers/Fabrikam"]["items"] == 1
    assert (
        by_path["Inbox/Accounts/Northwind Traders"]["record"] == "account:acc-northwind (Northwind Traders)"
    )
    assert [i["kind"] for i in data["issues"]] == ["record_not_found"]
    assert f"preview {ALICE}: 0/3 Inbox/Accounts/Northwind Traders" in result.stderr
    assert f"preview {ALICE}: 3/3 done" in result.stderr
    assert world.sim.stats["SyncFolderItems"] == 0  # no sync state was created


def test_preview_text_and_backfill_since(world):
    world.deliver("recent", "Inbox/Customers/Contoso")
    world.write_rules(
        f"""
        mailboxes:
          - address: {ALICE}
            folders:
              Inbox/Customers/Contoso:
                record: account:acc-contoso
                backfill_since: 30d
        """
    )
    result = world.run("rules", "preview")
    assert result.exit_code == 0, result.output
    assert "first sync takes 1 of 1 item(s): backfill_since: 30d" in result.output
    assert "    recent" in result.output
    assert "1 folder(s) would be tracked; the first sync takes 1 mail(s); nothing written" in result.output


def test_suggest_writes_a_valid_rules_file(world, tmp_path):
    world.sim.mailbox(ALICE).create_folder("Inbox/Customers/Fabrikm")
    result = world.run("rules", "suggest", ALICE)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert '      Inbox/Customers/Contoso: account:acc-contoso   # "Contoso"' in text
    assert '      Inbox/Accounts/Northwind Traders: account:acc-northwind   # "Northwind Traders"' in text
    assert '      # Inbox/Customers/Fabrikm: account:acc-fabrikam   # close match: "Fabrikam"' in text
    assert "rule(s)" in result.stderr
    out = tmp_path / "suggested"
    out.mkdir()
    (out / "alice.yaml").write_text(text, encoding="utf-8")
    rule_set = load_rules(out)
    assert {r.path for r in rule_set.rules} == {
        "Inbox/Customers/Contoso",
        "Inbox/Customers/Fabrikam",
        "Inbox/Accounts/Northwind Traders",
    }
    again = world.run("rules", "suggest", ALICE, "-o", str(out / "alice.yaml"))
    assert again.exit_code == 1 and "exists; not overwritten" in again.stderr


def test_run_dry_run_is_the_preview(world):
    world.deliver("recent", "Inbox/Customers/Contoso")
    result = world.run("run", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "alice@example.com  Inbox/Customers/Contoso  → account:acc-contoso" in result.stdout
    assert "first sync takes 1 of 1 item(s): backfill: true (every mail in the folder)" in result.stdout
    assert world.sim.stats["Subscribe"] == 0 and world.sim.stats["SyncFolderItems"] == 0


def test_run_takes_database_url(world, tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    result = world.run("run", "--database-url", f"sqlite:///{empty}")
    assert result.exit_code == 78
    assert "database schema is at nothing (empty database)" in result.stderr


def test_check_online_reports_missing_impersonation_rights(world, tmp_path):
    world.sim.add_service_account("noimp@example.com", password="pw2", impersonation=False)
    config = tmp_path / "noimp.toml"
    config.write_text(
        world.config.read_text(encoding="utf-8").replace("svc-foldertrack@example.com", "noimp@example.com"),
        encoding="utf-8",
    )
    result = world.run(
        "rules", "check", "--online", "--config", str(config), env={"FOLDERTRACK_EXCHANGE_PASSWORD": "pw2"}
    )
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if "cannot open the mailbox" in x]
    assert line.startswith("error: alice@example.com: cannot open the mailbox: ErrorImpersonateUserDenied")
    assert line.endswith(
        "(grant the service account ApplicationImpersonation, or use exchange.access = delegate)"
    )


def test_suggest_json(world):
    world.sim.mailbox(ALICE).create_folder("Inbox/Customers/Fabrikm")
    result = world.run("--json", "rules", "suggest", ALICE)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_path = {s["path"]: s for s in data["suggestions"]}
    assert by_path["Inbox/Customers/Contoso"] == {
        "path": "Inbox/Customers/Contoso",
        "match": "exact",
        "matched": "Contoso",
        "records": ["account:acc-contoso"],
    }
    assert by_path["Inbox/Customers/Fabrikm"]["match"] == "close"
    assert data["rules"].startswith("# Suggested by")


def test_suggest_unknown_mailbox(world):
    result = world.run("rules", "suggest", "ghost@example.com")
    assert result.exit_code == 1 and "ErrorNonExistentMailbox" in result.stderr
