"""Valid rule files: the values they produce, folder paths, matching, and equality for reloads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from foldertrack.model import RecordRef
from foldertrack.rules import FolderRule, RecordLookup, RuleSet, load_rules
from foldertrack.rules.paths import normalise_folder_path, parse_folder_path
from foldertrack.rules.validation import ALL_KEYS

REPO = Path(__file__).resolve().parents[1]

TEAM = """
defaults:
  on_leave: untrack
mailboxes:
  - address: Alice@Example.COM
    folders:
      Inbox/Customers/Contoso: account:3f1c
      Inbox/Customers/*:
        record: {type: account, by: name_or_number}
        backfill_since: 30d
      /Inbox / Fabrikam/:
        record: {type: account, name: Fabrikam Ltd}
        include_subfolders: yes
        on_leave: keep
      Inbox/Numbers: {record: {number: 0012}}
      Inbox/Plain: {record: null, backfill: false}
      Inbox/A\\/B: contact:c-1
  - addresses: [bob@example.com, carol@example.com, bob@example.com]
    defaults: {duplicates: last_wins, backfill_since: 2d}
    folders:
      Projects: {record: opportunity:42, backfill: true}
      Deals: opportunity:43
"""


@pytest.fixture
def team(write_rules, rules_dir) -> RuleSet:
    write_rules("team.yaml", TEAM)
    return load_rules(rules_dir)


def rule(rule_set: RuleSet, mailbox: str, path: str) -> FolderRule:
    (found,) = [r for r in rule_set.for_mailbox(mailbox) if r.path == path]
    return found


def test_values(team, rules_dir):
    assert team.mailboxes() == ("alice@example.com", "bob@example.com", "carol@example.com")
    assert len(team.rules) == 10

    contoso = rule(team, "alice@example.com", "Inbox/Customers/Contoso")
    assert contoso.record == RecordRef("account", "3f1c")
    assert (contoso.on_leave, contoso.backfill, contoso.backfill_since) == ("untrack", True, None)
    assert (contoso.include_subfolders, contoso.duplicates, contoso.is_pattern) == (
        False,
        "first_wins",
        False,
    )
    assert (contoso.source, contoso.line) == (str(rules_dir / "team.yaml"), 6)

    pattern = rule(team, "ALICE@example.com", "Inbox/Customers/*")
    assert pattern.is_pattern and pattern.segments == ("Inbox", "Customers")
    assert pattern.record == RecordLookup("account", "name_or_number", None)
    assert pattern.backfill_since == timedelta(days=30) and pattern.backfill

    fabrikam = rule(team, "alice@example.com", "Inbox/Fabrikam")
    assert fabrikam.record == RecordLookup("account", "name", "Fabrikam Ltd")
    assert fabrikam.include_subfolders and fabrikam.on_leave == "keep"

    assert rule(team, "alice@example.com", "Inbox/Numbers").record == RecordLookup(None, "number", "0012")
    plain = rule(team, "alice@example.com", "Inbox/Plain")
    assert plain.record is None and plain.backfill is False
    assert rule(team, "alice@example.com", "Inbox/A\\/B").segments == ("Inbox", "A/B")

    projects = rule(team, "bob@example.com", "Projects")
    assert (projects.duplicates, projects.backfill, projects.backfill_since) == ("last_wins", True, None)
    deals = rule(team, "carol@example.com", "Deals")
    assert (deals.backfill, deals.backfill_since) == (True, timedelta(days=2))


@pytest.mark.parametrize(
    ("text", "segments", "is_pattern", "normalised"),
    [
        ("Inbox/Customers/Contoso", ("Inbox", "Customers", "Contoso"), False, "Inbox/Customers/Contoso"),
        (" /Inbox / Sub folder/ ", ("Inbox", "Sub folder"), False, "Inbox/Sub folder"),
        ("Inbox/A\\/B", ("Inbox", "A/B"), False, "Inbox/A\\/B"),
        ("Inbox/Customers/*", ("Inbox", "Customers"), True, "Inbox/Customers/*"),
        ("Inbox/\\*", ("Inbox", "*"), False, "Inbox/\\*"),
        ("Inbox/back\\\\slash", ("Inbox", "back\\slash"), False, "Inbox/back\\\\slash"),
    ],
)
def test_folder_paths(text, segments, is_pattern, normalised):
    assert parse_folder_path(text) == (segments, is_pattern)
    assert normalise_folder_path(text) == normalised
    assert parse_folder_path(normalised) == (segments, is_pattern)


@pytest.mark.parametrize("text", ["", "/", "Inbox//A", "Inbox/*/A", "Inbox/A*", "*", "Inbox/A\\"])
def test_bad_folder_paths(text):
    with pytest.raises(ValueError):
        parse_folder_path(text)


@pytest.mark.parametrize(
    ("folder", "path", "record"),
    [
        ("Inbox/Customers/Contoso", "Inbox/Customers/Contoso", RecordRef("account", "3f1c")),
        (
            "inbox/CUSTOMERS/Acme Ltd",
            "Inbox/Customers/*",
            RecordLookup("account", "name_or_number", "Acme Ltd"),
        ),
        ("Inbox/Customers/Acme Ltd/2024", None, None),  # the pattern does not include subfolders
        ("Inbox/Customers", None, None),
        ("Inbox/Fabrikam", "Inbox/Fabrikam", RecordLookup("account", "name", "Fabrikam Ltd")),
        ("Inbox/Fabrikam/Invoices/2024", "Inbox/Fabrikam", RecordLookup("account", "name", "Fabrikam Ltd")),
        ("Inbox/Plain/Sub", None, None),
        ("Inbox/A\\/B", "Inbox/A\\/B", RecordRef("contact", "c-1")),
        (("Inbox", "A/B"), "Inbox/A\\/B", RecordRef("contact", "c-1")),
    ],
)
def test_match_most_specific_rule(team, folder, path, record):
    match = team.match("alice@example.com", folder)
    if path is None:
        assert match is None
    else:
        assert (match.rule.path, match.record) == (path, record)


def test_deeper_rule_beats_include_subfolders(write_rules, rules_dir):
    write_rules(
        "r.yaml",
        """
        mailboxes:
          - address: a@example.com
            folders:
              Inbox: {record: account:top, include_subfolders: true}
              Inbox/Customers/*: {record: {by: name}, include_subfolders: true}
        """,
    )
    rules = load_rules(rules_dir)
    assert rules.match("a@example.com", "Inbox/Other").record == RecordRef("account", "top")
    assert rules.match("a@example.com", "Inbox/Customers").record == RecordRef("account", "top")
    assert rules.match("a@example.com", "Inbox/Customers/X/Y").record == RecordLookup(None, "name", "X")
    assert rules.match("b@example.com", "Inbox") is None


def test_equality_and_fingerprint_ignore_layout(write_rules, rules_dir, tmp_path, team):
    other = tmp_path / "other"
    other.mkdir()
    # same content, split over two files, other order, comments, different spelling
    (other / "b.yaml").write_text(
        "# comment\ndefaults: {on_leave: untrack}\n"
        "mailboxes:\n  - addresses: [carol@example.com, bob@example.com]\n"
        "    folders:\n      Deals: {record: opportunity:43, backfill_since: 48h, duplicates: last_wins}\n"
        "      Projects: {record: opportunity:42, duplicates: last_wins}\n"
    )
    (other / "a.yaml").write_text(TEAM.split("  - addresses")[0])
    reloaded = load_rules(other)
    assert reloaded == team
    assert reloaded.fingerprint == team.fingerprint
    assert reloaded.files != team.files

    (other / "b.yaml").write_text((other / "b.yaml").read_text().replace("opportunity:43", "opportunity:44"))
    changed = load_rules(other)
    assert changed != team and changed.fingerprint != team.fingerprint


def test_rule_values_are_frozen_and_hashable(team):
    with pytest.raises(AttributeError):
        team.rules[0].path = "x"  # type: ignore[misc]
    assert len(set(team.rules)) == len(team.rules)


def test_example_rules_are_valid_and_use_every_key():
    rules = load_rules(REPO / "rules")
    assert rules.files == (str(REPO / "rules" / "example.yaml"),)
    text = (REPO / "rules" / "example.yaml").read_text()
    for key in ALL_KEYS:
        assert f"{key}:" in text, key
    assert any(r.is_pattern for r in rules.rules)
    assert {type(r.record) for r in rules.rules} == {RecordRef, RecordLookup, type(None)}
    assert {r.on_leave for r in rules.rules} == {"keep", "untrack", "delete"}
    assert any(not r.send.body and not r.send.attachments for r in rules.rules)
    assert {r.duplicates for r in rules.rules} == {"first_wins", "last_wins"}
    assert any(r.backfill_since for r in rules.rules) and any(not r.backfill for r in rules.rules)
    assert any(r.include_subfolders for r in rules.rules)


def test_readme_documents_every_rule_key():
    docs = [p for p in (REPO / "README.md", REPO / ".readme-parts" / "config-rules.md") if p.exists()]
    assert docs
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        for key in ALL_KEYS:
            assert f"`{key}`" in text, f"{doc.name} does not document rule key {key!r}"
