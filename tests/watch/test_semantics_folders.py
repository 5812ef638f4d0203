"""DESIGN "Tracking semantics", the folder rows, end to end (simulator + exchangelib + watcher + SQLite):
renamed, moved and deleted folders; pattern rules with folders created after start; nested folders with
``include_subfolders``; rules that match nothing; and what ``foldertrack status`` says about each."""

from __future__ import annotations

import pytest

from foldertrack.simulator import MailSpec
from tests.watch.conftest import ALICE, both_sources
from tests.watch.test_status import mailbox_status, run_status, warnings_of

RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""


def _mail(subject, **kw):
    kw.setdefault("sender", "dana@contoso.com")
    kw.setdefault("to", [ALICE])
    kw.setdefault("message_id", f"<{subject.replace(' ', '-')}@example.com>")
    return MailSpec(subject=subject, body=f"body of {subject}", **kw)


def _file(h, subject, folder):
    """Deliver a mail to the Inbox and move it into ``folder``, as a user would; returns its new id."""
    item = h.sim.deliver(ALICE, _mail(subject), folder="Inbox")
    return h.sim.mailbox(ALICE).move_item(item, folder)


def _start(h, rules=RULES, folders=("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam")):
    mb = h.add_mailbox(ALICE)
    for path in folders:
        mb.create_folder(path)
    h.write_rules(rules)
    h.start_watcher()
    return mb


def _folder(h, path):
    box = mailbox_status(h.database_url, ALICE)
    return next((f for f in box["folders"] if f["path"] == path), None)


def _subscribed(h, path):
    """Wait until alice's subscription covers ``path``: a folder event there reaches the watcher. (Until the
    watcher re-reads the hierarchy after resubscribing, an event just before would be missed: see
    test_folder_created_while_unsubscribed_is_found_after_resubscribe.)"""
    if not h.watcher.sync_context.mail_source().streams:
        return  # Graph: every poll reads the whole folder tree's delta, no subscription to wait for
    folder_id = h.sim.mailbox(ALICE).folder_id(path)

    def covered():
        return any(s.mailbox == ALICE and folder_id in s.subscribed_ids for s in h.watcher.mailbox_states())

    h.wait_for(covered, what=f"the subscription to cover {path}")


def _tracks(h, path):
    """Wait until ``status`` lists ``path`` as a tracked folder (the watcher resolved it)."""
    return h.wait_for(lambda: _folder(h, path), what=f"{path} in status")


@both_sources
def test_renamed_folder_keeps_tracking_and_status_flags_the_stale_path(harness):
    mb = _start(harness)
    _file(harness, "before rename", "Inbox/Customers/Contoso")
    harness.wait_tracked("before rename", regarding_id="acc-contoso")

    mb.rename_folder("Inbox/Customers/Contoso", "Contoso Ltd")
    (warning,) = harness.wait_for(
        lambda: warnings_of(harness.engine, ALICE, "stale_path"), what="a stale-path warning"
    )
    assert warning["path"] == "Inbox/Customers/Contoso" and warning["rule"].endswith("rules.yaml:5")
    assert "'Inbox/Customers/Contoso Ltd'" in warning["message"]
    folder = _folder(harness, "Inbox/Customers/Contoso Ltd")
    assert folder["status"] == "stale_path" and folder["configured_path"] == "Inbox/Customers/Contoso"
    assert folder["tracked"] == 1
    text = run_status(harness.database_url)
    assert "stale_path" in text and "is now 'Inbox/Customers/Contoso Ltd'" in text

    _file(harness, "after rename", "Inbox/Customers/Contoso Ltd")
    after = harness.wait_tracked("after rename", regarding_id="acc-contoso")
    assert after["folder_id"] == harness.activity("before rename")["folder_id"]

    # the admin updates the rule to the new name: same folder, same sync state, no warning
    harness.write_rules(RULES.replace("Inbox/Customers/Contoso:", "Inbox/Customers/Contoso Ltd:"))
    harness.wait_for(lambda: not warnings_of(harness.engine, ALICE), what="the warning to go away")
    assert _folder(harness, "Inbox/Customers/Contoso Ltd")["status"] == "active"
    harness.settle()
    assert len(harness.activities()) == 2


@both_sources
def test_moved_folder_keeps_tracking_and_status_flags_the_stale_path(harness):
    mb = _start(harness, folders=("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Archive"))
    mb.move_folder("Inbox/Customers/Fabrikam", "Archive")
    (warning,) = harness.wait_for(
        lambda: warnings_of(harness.engine, ALICE, "stale_path"), what="a stale-path warning"
    )
    assert warning["path"] == "Inbox/Customers/Fabrikam" and "'Archive/Fabrikam'" in warning["message"]

    _file(harness, "into moved folder", "Archive/Fabrikam")
    harness.wait_tracked("into moved folder", regarding_id="acc-fabrikam", folder_path="Archive/Fabrikam")
    assert "is now 'Archive/Fabrikam'" in run_status(harness.database_url)


@both_sources
@pytest.mark.parametrize("hard", [True, False], ids=["hard-delete", "to-deleted-items"])
def test_deleted_folder_is_reported_broken_and_activities_are_kept(harness, hard):
    mb = _start(harness)
    kept = _file(harness, "in doomed folder", "Inbox/Customers/Contoso")
    harness.wait_tracked("in doomed folder", regarding_id="acc-contoso")
    if not hard:
        mb.move_item(kept, "Inbox")  # a soft-deleted folder keeps its items; take this one out first

    mb.delete_folder("Inbox/Customers/Contoso", hard=hard)
    (warning,) = harness.wait_for(
        lambda: warnings_of(harness.engine, ALICE, "folder_deleted"), what="a folder-deleted warning"
    )
    assert warning["path"] == "Inbox/Customers/Contoso" and "the rule is broken" in warning["message"]
    box = mailbox_status(harness.database_url, ALICE)
    assert {f["configured_path"]: f["status"] for f in box["folders"]}["Inbox/Customers/Contoso"] == "deleted"
    assert [w["kind"] for w in box["warnings"]] == ["folder_deleted"]
    assert "was deleted" in run_status(harness.database_url)

    if not hard:  # the folder now lives in Deleted Items: mails filed there are not tracked any more
        _file(harness, "into deleted folder", "Deleted Items/Contoso")
    _file(harness, "sentinel", "Inbox/Customers/Fabrikam")
    harness.wait_tracked("sentinel", regarding_id="acc-fabrikam")
    harness.settle()
    assert harness.activity("into deleted folder") is None
    activity = harness.activity("in doomed folder")
    assert activity["state"] == "tracked" and activity["regarding_id"] == "acc-contoso"


@both_sources
def test_folder_restored_from_deleted_items_is_tracked_again(harness):
    mb = _start(harness)
    restored_id = mb.folder_id("Inbox/Customers/Contoso")
    mb.delete_folder("Inbox/Customers/Contoso")
    harness.wait_for(lambda: warnings_of(harness.engine, ALICE, "folder_deleted"), what="folder deleted")
    _subscribed(harness, "Inbox/Customers")  # where the rule's folder would reappear
    mb.move_folder("Deleted Items/Contoso", "Inbox/Customers")
    harness.wait_for(lambda: not warnings_of(harness.engine, ALICE), what="the warning to go away")
    _file(harness, "after restore", "Inbox/Customers/Contoso")
    assert harness.wait_tracked("after restore", regarding_id="acc-contoso")["folder_id"] == restored_id


@both_sources
def test_folder_recreated_after_a_hard_delete_is_the_rules_folder_again(harness):
    mb = _start(harness)
    old_id = mb.folder_id("Inbox/Customers/Contoso")
    mb.delete_folder("Inbox/Customers/Contoso", hard=True)
    harness.wait_for(lambda: warnings_of(harness.engine, ALICE, "folder_deleted"), what="folder deleted")
    _subscribed(harness, "Inbox/Customers")
    new_id = mb.create_folder("Inbox/Customers/Contoso")
    harness.wait_for(lambda: not warnings_of(harness.engine, ALICE), what="the warning to go away")
    _file(harness, "in recreated folder", "Inbox/Customers/Contoso")
    activity = harness.wait_tracked("in recreated folder", regarding_id="acc-contoso")
    assert activity["folder_id"] == new_id != old_id
    statuses = [f["status"] for f in mailbox_status(harness.database_url, ALICE)["folders"]]
    assert statuses == ["active", "active"]  # Contoso (new) and Fabrikam; the deleted one is retired


PATTERN_RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/*:
        record: {{type: account, by: name_or_number}}
      Inbox/Sentinel: account:acc-fabrikam
"""


@both_sources
def test_pattern_rule_tracks_subfolders_created_after_start(harness):
    mb = _start(harness, rules=PATTERN_RULES, folders=("Inbox/Customers", "Inbox/Sentinel"))
    (warning,) = harness.wait_for(
        lambda: warnings_of(harness.engine, ALICE, "no_match"), what="'matches nothing' for the pattern"
    )
    assert warning["path"] == "Inbox/Customers/*" and "matches no folder" in warning["message"]

    # created after start, a mail filed at once (before the watcher saw the folder): the backfill finds it
    mb.create_folder("Inbox/Customers/Fabrikam")
    _file(harness, "first fabrikam", "Inbox/Customers/Fabrikam")
    harness.wait_tracked("first fabrikam", regarding_id="acc-fabrikam", regarding_type="account")
    assert _tracks(harness, "Inbox/Customers/Fabrikam")["status"] == "active"
    _file(harness, "second fabrikam", "Inbox/Customers/Fabrikam")
    harness.wait_tracked("second fabrikam", regarding_id="acc-fabrikam")

    # looked up by number too (name_or_number): C-100 is Contoso's number
    mb.create_folder("Inbox/Customers/C-100")
    _tracks(harness, "Inbox/Customers/C-100")
    _file(harness, "by number", "Inbox/Customers/C-100")
    harness.wait_tracked("by number", regarding_id="acc-contoso")
    harness.wait_for(lambda: not warnings_of(harness.engine, ALICE, "no_match"), what="no_match to clear")

    # a subfolder whose name is no record: reported, and its mails are not tracked
    mb.create_folder("Inbox/Customers/Nobody Inc")
    (missing,) = harness.wait_for(
        lambda: warnings_of(harness.engine, ALICE, "record_not_found"), what="a 'no record' warning"
    )
    assert missing["path"] == "Inbox/Customers/Nobody Inc" and "'Nobody Inc'" in missing["message"]
    _file(harness, "nobody's mail", "Inbox/Customers/Nobody Inc")
    _file(harness, "sentinel", "Inbox/Sentinel")
    harness.wait_tracked("sentinel")
    harness.settle()
    assert harness.activity("nobody's mail") is None
    assert "no record found for folder name 'Nobody Inc'" in run_status(harness.database_url)


@both_sources
def test_rules_that_match_nothing_are_reported(harness):
    rules = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/No Such Folder: account:acc-contoso
      Inbox/No Such Parent/*:
        record: {{type: account, by: name}}
      Inbox/Customers/Fabrikam:
        record: {{type: account, name: Nobody Inc}}
      Inbox/Customers/Empty/*:
        record: {{type: account, by: name}}
"""
    _start(
        harness,
        rules=rules,
        folders=("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Inbox/Customers/Empty"),
    )
    warnings = harness.wait_for(lambda: warnings_of(harness.engine, ALICE), what="rule warnings")
    by_path = {w["path"]: w["kind"] for w in warnings}
    assert by_path == {
        "Inbox/No Such Folder": "folder_not_found",
        "Inbox/No Such Parent/*": "folder_not_found",
        "Inbox/Customers/Fabrikam": "record_not_found",
        "Inbox/Customers/Empty/*": "no_match",
    }
    text = run_status(harness.database_url)
    assert "folder 'Inbox/No Such Folder' does not exist [folder_not_found]" in text
    assert "no record found for account with name 'Nobody Inc' [record_not_found]" in text
    _file(harness, "still works", "Inbox/Customers/Contoso")
    harness.wait_tracked("still works", regarding_id="acc-contoso")

    # the admin creates the missing folders: the rules heal by themselves
    mb = harness.sim.mailbox(ALICE)
    _subscribed(harness, "Inbox")
    mb.create_folder("Inbox/No Such Folder")
    mb.create_folder("Inbox/No Such Parent/Fabrikam")
    _tracks(harness, "Inbox/No Such Folder")
    _tracks(harness, "Inbox/No Such Parent/Fabrikam")
    _file(harness, "now found", "Inbox/No Such Folder")
    _file(harness, "found by pattern", "Inbox/No Such Parent/Fabrikam")
    harness.wait_tracked("now found", regarding_id="acc-contoso")
    harness.wait_tracked("found by pattern", regarding_id="acc-fabrikam")
    kinds = sorted(w["kind"] for w in warnings_of(harness.engine, ALICE))
    assert kinds == ["no_match", "record_not_found"]


# EWS only: it expires the EWS subscriptions (Graph reads the folder tree by delta, not by subscription)
def test_folder_created_while_unsubscribed_is_found_after_resubscribe(harness):
    mb = _start(harness, rules=PATTERN_RULES, folders=("Inbox/Customers/Contoso", "Inbox/Sentinel"))
    _tracks(harness, "Inbox/Customers/Contoso")
    harness.wait_for(
        lambda: mailbox_status(harness.database_url, ALICE)["mode"] == "streaming", what="streaming"
    )
    with harness.sim.store.lock:  # nothing reaches the server in between: the folder event has no subscriber
        harness.sim.faults.expire_subscriptions()
        mb.create_folder("Inbox/Customers/Fabrikam")
    _file(harness, "created while unsubscribed", "Inbox/Customers/Fabrikam")
    harness.wait_tracked("created while unsubscribed", timeout=3, regarding_id="acc-fabrikam")


NESTED_RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Projects:
        record: account:acc-fabrikam
        include_subfolders: true
      Projects/2024/Special: account:acc-contoso
"""


@both_sources
def test_nested_folders_with_include_subfolders_also_created_later(harness):
    mb = _start(
        harness,
        rules=NESTED_RULES,
        folders=("Projects/2024/Q1/Deep", "Projects/2024/Special/Sub", "Elsewhere"),
    )
    _file(harness, "top level", "Projects")
    _file(harness, "deep existing", "Projects/2024/Q1/Deep")
    _file(harness, "special", "Projects/2024/Special")
    harness.wait_tracked("top level", regarding_id="acc-fabrikam")
    harness.wait_tracked("deep existing", regarding_id="acc-fabrikam", folder_path="Projects/2024/Q1/Deep")
    # a more specific rule wins over the inherited one; its own subfolders are not included
    harness.wait_tracked("special", regarding_id="acc-contoso")

    mb.create_folder("Projects/2025/Q3/Deeper/Deepest")
    _file(harness, "deep new", "Projects/2025/Q3/Deeper/Deepest")
    harness.wait_tracked(
        "deep new", regarding_id="acc-fabrikam", folder_path="Projects/2025/Q3/Deeper/Deepest"
    )
    _tracks(harness, "Projects/2025/Q3/Deeper/Deepest")

    mb.create_folder("Projects/2025/Q4")  # created once the watcher already tracks its parent
    _tracks(harness, "Projects/2025/Q4")
    _file(harness, "q4 mail", "Projects/2025/Q4")
    harness.wait_tracked("q4 mail", regarding_id="acc-fabrikam")

    # Special's rule does not include its subfolders, so Sub inherits from Projects, whose rule does
    _file(harness, "below special", "Projects/2024/Special/Sub")
    harness.wait_tracked("below special", regarding_id="acc-fabrikam")

    _file(harness, "outside", "Elsewhere")
    _file(harness, "sentinel", "Projects/2024")
    harness.wait_tracked("sentinel", regarding_id="acc-fabrikam")
    harness.settle()
    assert harness.activity("outside") is None
    paths = {f["path"]: f["status"] for f in mailbox_status(harness.database_url, ALICE)["folders"]}
    assert paths["Projects/2025/Q3/Deeper/Deepest"] == "active"
    assert "Elsewhere" not in paths
    assert not warnings_of(harness.engine, ALICE)
