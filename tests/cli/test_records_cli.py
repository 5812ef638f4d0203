"""`foldertrack records delete` (all or nothing, addresses too, JSON, dry run) and `records import` of a
CSV with extra columns (ignored with a note)."""

from __future__ import annotations

import json

from tests.cli.conftest import ALICE


def test_delete_records_and_their_addresses(world):
    result = world.run("records", "delete", "account:acc-contoso", "contact:con-dana")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "deleted account:acc-contoso (Contoso)",
        "deleted contact:con-dana (Dana Contoso)",
    ]
    listed = json.loads(world.run("records", "list", "--json").stdout)
    assert {(r["type"], r["id"]) for r in listed} == {
        ("account", "acc-fabrikam"),
        ("account", "acc-northwind"),
    }
    # the lookup rule no longer finds its record: the online check says so
    world.write_rules(
        f"""
        mailboxes:
          - address: {ALICE}
            folders:
              Inbox/Customers/Contoso: {{record: {{type: account, name: Contoso}}}}
        """
    )
    check = world.run("rules", "check", "--online")
    assert (
        "warning: alice@example.com: no account with name 'Contoso' in the record directory (yet)"
        in check.stderr
    )


def test_unknown_record_deletes_nothing(world):
    result = world.run("records", "delete", "account:acc-contoso", "account:nope", "lead:gone")
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == "error: not in the record directory (nothing deleted): account:nope, lead:gone"
    )
    assert len(json.loads(world.run("records", "list", "--json").stdout)) == 4


def test_dry_run_and_json(world):
    result = world.run("records", "delete", "account:acc-fabrikam", "--dry-run", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "dry_run": True,
        "deleted": [{"type": "account", "id": "acc-fabrikam", "name": "Fabrikam"}],
    }
    assert len(json.loads(world.run("records", "list", "--json").stdout)) == 4


def test_bad_reference_is_a_usage_error(world):
    result = world.run("records", "delete", "widget:1")
    assert result.exit_code == 2 and "record type 'widget'" in result.stderr


def test_import_ignores_extra_columns_with_a_note(world, tmp_path):
    csv = tmp_path / "export.csv"
    csv.write_text(
        "type,id,name,Owner,number,emails,Created On\n"
        "account,acc-new,New Co,Jane,N-1,info@new.example,2026-01-01\n",
        encoding="utf-8",
    )
    result = world.run("records", "import", str(csv))
    assert result.exit_code == 0, result.output
    assert "1 records (1 created, 0 updated, 0 unchanged)" in result.stdout
    assert result.stderr.splitlines() == [
        "note: column 'Owner' ignored (known: type, id, name, number, emails)",
        "note: column 'Created On' ignored (known: type, id, name, number, emails)",
    ]
    listed = json.loads(world.run("records", "list", "--json", "--type", "account").stdout)
    new = next(r for r in listed if r["id"] == "acc-new")
    assert new == {
        "type": "account",
        "id": "acc-new",
        "name": "New Co",
        "number": "N-1",
        "emails": ["info@new.example"],
    }


def test_import_json_reports_counts_and_ignored_columns(world, tmp_path):
    csv = tmp_path / "export.csv"
    csv.write_text("type,id,name,Owner\naccount,acc-j,J Co,Jane\n", encoding="utf-8")
    result = world.run("records", "import", "--json", str(csv))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["created"] == 1 and report["total"] == 1 and report["ignored_columns"] == ["Owner"]


def test_import_with_a_misspelt_required_column_is_still_an_error(world, tmp_path):
    csv = tmp_path / "typo.csv"
    csv.write_text("type,id,nmae\naccount,a1,A\n", encoding="utf-8")
    result = world.run("records", "import", str(csv))
    assert result.exit_code == 1
    assert (
        "unknown column 'nmae'" in result.stderr and "header lacks required column(s) name" in result.stderr
    )
