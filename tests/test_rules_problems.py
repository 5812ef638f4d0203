"""Every kind of rule-file problem, with the exact line it is reported at, and all of them at once."""

from __future__ import annotations

import pytest

from foldertrack.errors import RuleError
from foldertrack.rules import load_rules

HEAD = """\
mailboxes:
  - address: alice@example.com
    folders:
"""  # the folders of each case below start at line 4
INBOX = "    folders: {Inbox: account:1}\n"


def problems_of(rules_dir) -> list[str]:
    """``line: message`` of each problem (the path is checked separately)."""
    with pytest.raises(RuleError) as info:
        load_rules(rules_dir)
    return [f"{p.line}: {p.message}" for p in info.value.problems]


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        # malformed record references
        ("      Inbox/A: account\n", "4: record reference 'account' is not TYPE:ID"),
        ("      Inbox/A: widget:1\n", "4: record type 'widget' is not one of account, contact"),
        ("      Inbox/A: account:has space\n", "4: record id 'has space' must be 1-100 letters"),
        ("      Inbox/A:\n        record: 'contact:'\n", "5: record id '' must be 1-100"),
        # missing or wrongly typed fields
        ("      Inbox/A:\n", "4: folder 'Inbox/A' has no record: give TYPE:ID, or 'record: null'"),
        ("      Inbox/A: {backfill: true}\n", "4: folder 'Inbox/A': missing key 'record'"),
        ("      Inbox/A: [account:1]\n",
         "4: folder 'Inbox/A' must be TYPE:ID or a mapping with 'record:', not a list"),
        ("      Inbox/A:\n        record: [account:1]\n", "5: record must be a string, not a list"),
        ("      Inbox/A: {record: {type: account}}\n", "4: a record lookup needs 'name:' or 'number:'"),
        ("      Inbox/A:\n        record: {name: X, number: 1}\n", "5: give either 'name' or 'number'"),
        ("      Inbox/A:\n        record:\n          name: [X]\n",
         "6: lookup name must be a string, not a list"),
        ("      Inbox/A:\n        record: {type: acount, name: X}\n",
         "5: record type must be one of account, contact, lead, opportunity, incident, not 'acount' "
         "(did you mean 'account'?)"),
        ("      Inbox/A: {record: {by: name, name: X}}\n", "4: 'by:' is for pattern paths ending in '/*'"),
        ("      Inbox/A/*: account:1\n",
         "4: pattern 'Inbox/A/*' maps each subfolder to its own record: use a lookup"),
        ("      Inbox/A/*: {record: null}\n", "4: pattern 'Inbox/A/*' maps each subfolder"),
        ("      Inbox/A/*:\n        record: {name: X}\n",
         "5: pattern 'Inbox/A/*' looks up each subfolder's name: use 'by:'"),
        ("      Inbox/A/*:\n        record: {by: title}\n",
         "5: by must be one of name, number, name_or_number"),
        # bad option values
        ("      Inbox/A: {record: null, backfill: maybe}\n",
         "4: backfill must be true or false, not 'maybe'"),
        ("      Inbox/A:\n        record: null\n        include_subfolders: 1\n",
         "6: include_subfolders must be true or false, not '1'"),
        ("      Inbox/A:\n        record: null\n        on_leave: remove\n",
         "6: on_leave must be one of keep, untrack, delete, not 'remove'"),
        ("      Inbox/A:\n        record: null\n        send: {body: 1}\n",
         "6: send.body must be true or false"),
        ("      Inbox/A:\n        record: null\n        send: {bodies: false}\n",
         "6: unknown key 'bodies' in send (did you mean 'body'?)"),
        ("      Inbox/A:\n        record: null\n        duplicates: first\n",
         "6: duplicates must be one of first_wins, last_wins, not 'first' (did you mean 'first_wins'?)"),
        ("      Inbox/A:\n        record: null\n        backfill_since: 30 days\n",
         "6: backfill_since must be a duration like 30d or 12h, not '30 days'"),
        ("      Inbox/A:\n        record: null\n        backfill_since: 0d\n",
         "6: backfill_since must be a duration"),
        ("      Inbox/A:\n        record: null\n        backfill: false\n        backfill_since: 30d\n",
         "7: backfill: false contradicts backfill_since"),
        # unknown keys
        ("      Inbox/A:\n        record: null\n        on_leaves: keep\n",
         "6: unknown key 'on_leaves' in folder 'Inbox/A' (did you mean 'on_leave'?)"),
        ("      Inbox/A:\n        record: {type: account, nmae: X}\n",
         "5: unknown key 'nmae' in a record lookup (did you mean 'name'?)"),
        # folder paths
        ("      Inbox//A: account:1\n", "4: folder path 'Inbox//A' has an empty folder name"),
        ("      Inbox/Cust*: account:1\n",
         "4: folder path 'Inbox/Cust*': '*' is only a pattern as the whole last"),
        ("      '*': {record: {by: name}}\n", "4: a pattern needs a parent folder"),
        ("      Inbox/A: account:1\n      Inbox/B: account:2\n      Inbox/A: account:1\n",
         "6: duplicate key 'Inbox/A' in folders (folder path: record) (first at line 4)"),
        ("      Inbox/A: !!python/name:os.system account:1\n",
         "4: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'"),
    ],
)  # fmt: skip
def test_folder_problem_and_its_line(folders, expected, write_rules, rules_dir):
    path = write_rules("team.yaml", HEAD + folders)
    with pytest.raises(RuleError) as info:
        load_rules(rules_dir)
    assert [p.path for p in info.value.problems] == [str(path)]
    (problem,) = problems_of(rules_dir)
    assert problem.startswith(expected), problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mailboxes:\n  - address: alice\n" + INBOX,
         "2: mailbox address 'alice' is not an email address like user@example.com"),
        ("mailboxes:\n  - address: alice@example.com bob@example.com\n" + INBOX,
         "2: mailbox address 'alice@example.com bob@example.com' is not an email address"),
        ("mailboxes:\n  - addresses:\n      - a@example.com\n      - b@@example.com\n" + INBOX,
         "4: mailbox address 'b@@example.com' is not an email address"),
        ("mailboxes:\n  - address: [a@example.com]\n" + INBOX,
         "2: a mailbox address must be a string, not a list"),
        ("mailboxes:\n  - addresses: a@example.com\n" + INBOX,
         "2: addresses must be a list, not 'a@example.com'"),
        ("mailboxes:\n  - addresses: []\n" + INBOX, "2: addresses is empty"),
        ("mailboxes:\n  - address: a@example.com\n    addresses: [b@example.com]\n" + INBOX,
         "3: give either 'address' or 'addresses', not both"),
        ("mailboxes:\n  - folders: {Inbox: account:1}\n", "2: missing key 'address' (or 'addresses')"),
        ("mailboxes:\n  - adress: a@example.com\n" + INBOX,
         "2: unknown key 'adress' in a mailbox block (did you mean 'address'?)"),
        ("mailboxes:\n  - address: a@example.com\n    folders:\n      Inbox: {recrod: account:1}\n",
         "4: unknown key 'recrod' in folder 'Inbox' (did you mean 'record'?)"),
        ("mailboxes:\n  - address: a@example.com\n", "2: missing key 'folders' in a mailbox block"),
        ("mailboxes:\n  - address: a@example.com\n    folders: {}\n", "3: folders is empty"),
        ("mailboxes:\n  - address: a@example.com\n    folders: [Inbox]\n",
         "3: folders (folder path: record) must be a mapping, not a list"),
        ("mailboxes:\n  - address: a@example.com\n    folder: {Inbox: account:1}\n",
         "3: unknown key 'folder' in a mailbox block (did you mean 'folders'?)"),
        ("mailboxes: []\n", "1: mailboxes is empty"),
        ("mailboxes: alice@example.com\n", "1: mailboxes must be a list, not 'alice@example.com'"),
        ("mailboxes:\n  - alice@example.com\n",
         "2: a mailbox block must be a mapping, not 'alice@example.com'"),
        ("defaults:\n  on_leave: keep\n", "1: missing key 'mailboxes'"),
        ("# team rules\n\ndefaults: [keep]\nmailboxes:\n  - address: a@example.com\n" + INBOX,
         "3: defaults must be a mapping, not a list"),
        ("defaults:\n  record: account:1\nmailboxes:\n  - address: a@example.com\n" + INBOX,
         "2: unknown key 'record' in defaults (expected backfill, backfill_since, on_leave"),
        ("mailbox:\n  - address: a@example.com\n",
         "1: unknown key 'mailbox' in the rule file (did you mean 'mailboxes'?)"),
        ("- address: a@example.com\n", "1: a rule file must be a mapping with 'mailboxes:', not a list"),
        ("just text\n", "1: a rule file must be a mapping with 'mailboxes:', not 'just text'"),
        # YAML syntax errors, at the line PyYAML points at
        ("mailboxes:\n  - address: a@example.com\n    folders: {Inbox: account:1\n",
         "4: YAML syntax error: while parsing a flow mapping; expected ',' or '}'"),
        ("mailboxes:\n  - address: a@example.com\n   folders: {}\n", "3: YAML syntax error:"),
        ("mailboxes:\n\t- address: a@example.com\n", "2: YAML syntax error:"),
        ("mailboxes: *nothing\n", "1: YAML syntax error: found undefined alias 'nothing'"),
        ("a: 1\n---\nb: 2\n", "2: YAML syntax error: expected a single document in the stream"),
        # empty files
        ("", "1: file is empty (expected 'mailboxes:')"),
        ("# only a comment\n\n", "1: file is empty"),
        ("---\n", "1: file is empty"),
    ],
)  # fmt: skip
def test_file_problem_and_its_line(text, expected, write_rules, rules_dir):
    write_rules("team.yaml", text)
    (problem,) = problems_of(rules_dir)
    assert problem.startswith(expected), problem


def test_non_utf8_file_names_the_line(write_rules, rules_dir):
    write_rules(
        "latin1.yaml",
        "mailboxes:\n  - address: a@example.com\n    folders:\n      Inbox/Caf\xe9: x\n".encode("latin-1"),
    )
    assert problems_of(rules_dir) == ["4: file is not UTF-8 text (byte 0xe9)"]


def test_control_character_is_a_syntax_error(write_rules, rules_dir):
    write_rules("ctl.yaml", "mailboxes:\n  - address: a@exa\x07mple.com\n")
    (problem,) = problems_of(rules_dir)
    assert problem.startswith("2: YAML syntax error: special characters are not allowed")


def test_utf8_bom_is_fine(write_rules, rules_dir):
    write_rules(
        "bom.yaml",
        "\ufeffmailboxes:\n  - address: a@example.com\n    folders: {Caf\xe9: account:1}\n".encode(),
    )
    assert load_rules(rules_dir).rules[0].path == "Caf\xe9"


def test_conflicting_records_in_one_file_are_reported_at_both_lines(write_rules, rules_dir):
    write_rules(
        "team.yaml",
        """
        mailboxes:
          - address: alice@example.com
            folders:
              Inbox/Contoso: account:1
          - addresses: [bob@example.com, Alice@Example.com]
            folders:
              inbox/contoso/: account:2
        """,
    )
    assert problems_of(rules_dir) == [
        "4: folder 'Inbox/Contoso' of alice@example.com is mapped to account:1 here "
        f"but to account:2 at {rules_dir / 'team.yaml'}:7",
        "7: folder 'inbox/contoso' of alice@example.com is mapped to account:2 here "
        f"but to account:1 at {rules_dir / 'team.yaml'}:4",
    ]


def test_conflicting_records_across_files_name_both_files(write_rules, rules_dir):
    a = write_rules(
        "a.yaml", "mailboxes:\n  - address: alice@example.com\n    folders:\n      Inbox/X: account:1\n"
    )
    b = write_rules(
        "b.yaml", "mailboxes:\n  - address: alice@example.com\n    folders:\n      Inbox/X: {record: null}\n"
    )
    with pytest.raises(RuleError) as info:
        load_rules(rules_dir)
    assert str(info.value).splitlines() == [
        f"{a}:4: folder 'Inbox/X' of alice@example.com is mapped to account:1 here but to no record at {b}:4",
        f"{b}:4: folder 'Inbox/X' of alice@example.com is mapped to no record here but to account:1 at {a}:4",
    ]


def test_same_folder_same_record_is_not_a_conflict(write_rules, rules_dir):
    write_rules(
        "a.yaml", "mailboxes:\n  - address: alice@example.com\n    folders:\n      Inbox/X: account:1\n"
    )
    write_rules(
        "b.yaml", "mailboxes:\n  - addresses: [ALICE@example.com]\n    folders:\n      INBOX/X: ACCOUNT:1\n"
    )
    (rule,) = load_rules(rules_dir).rules
    assert (rule.source, rule.line, str(rule.record)) == (str(rules_dir / "a.yaml"), 4, "account:1")


def test_same_record_with_different_options_is_reported(write_rules, rules_dir):
    write_rules(
        "a.yaml", "mailboxes:\n  - address: alice@example.com\n    folders:\n      Inbox/X: account:1\n"
    )
    write_rules(
        "b.yaml",
        HEAD + "      Inbox/X: {record: account:1, backfill_since: 1d}\n",
    )
    assert problems_of(rules_dir) == [
        f"4: folder 'Inbox/X' of alice@example.com is also mapped at {rules_dir / 'a.yaml'}:4 with other "
        "options (backfill_since: None there, 1d here)"
    ]


def test_all_problems_across_all_files_are_reported(write_rules, rules_dir):
    write_rules("1-empty.yaml", "")
    write_rules("2-syntax.yaml", "mailboxes: [\n")
    write_rules("3-latin1.yaml", b"# caf\xe9\n")
    write_rules(
        "4-many.yaml",
        """
        defaults:
          on_leave: forget
        mailboxes:
          - address: nobody
            folders:
              Inbox/A: account
              Inbox/B: {record: contact:1, colour: red}
        """,
    )
    with pytest.raises(RuleError) as info:
        load_rules(rules_dir)
    found = [(p.path.rsplit("/", 1)[1], p.line) for p in info.value.problems]
    assert found == [
        ("1-empty.yaml", 1),
        ("2-syntax.yaml", 2),
        ("3-latin1.yaml", 1),
        ("4-many.yaml", 2),
        ("4-many.yaml", 4),
        ("4-many.yaml", 6),
        ("4-many.yaml", 7),
    ]


def test_missing_or_empty_directory(tmp_path, rules_dir, write_rules):
    with pytest.raises(RuleError, match="rules directory does not exist"):
        load_rules(tmp_path / "nope")
    write_rules("README.md", "not a rule file")
    write_rules(".hidden.yaml", "")
    with pytest.raises(RuleError, match=r"no rule files \(\*.yaml\)"):
        load_rules(rules_dir)
