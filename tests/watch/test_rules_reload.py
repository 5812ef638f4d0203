"""Hot reload of ``rules/`` while the watcher runs (watchdog, no restart): a valid set is swapped in at once,
folders are subscribed, backfilled or dropped accordingly; an invalid set is logged as ``path:line: message``
and the old set stays in force."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from foldertrack.simulator import MailSpec
from foldertrack.testing.harness import wait_until
from tests.watch.conftest import ALICE, BOB
from tests.watch.test_status import mailbox_status

OLD_RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Sentinel: account:acc-fabrikam
"""

NEW_RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Sentinel: account:acc-fabrikam
      Inbox/Customers/Fabrikam:
        record: account:acc-fabrikam
      Inbox/Projects:
        record: null
        backfill: false
  - address: {BOB}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
"""

FOLDERS = ("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Inbox/Projects", "Inbox/Sentinel")


def _mail(subject):
    return MailSpec(
        subject=subject, sender="dana@contoso.com", to=[ALICE], message_id=f"<{subject.replace(' ', '-')}@x>"
    )


def _file(h, subject, folder, address=ALICE):
    item = h.sim.deliver(address, _mail(subject), folder="Inbox")
    return h.sim.mailbox(address).move_item(item, folder)


def _setup(h, rules=OLD_RULES):
    for address in (ALICE, BOB):
        mb = h.add_mailbox(address)
        for path in FOLDERS:
            mb.create_folder(path)
    h.write_rules(rules)


def _subscribed_paths(h, address):
    mb = h.sim.mailbox(address)
    for state in h.watcher.mailbox_states():
        if state.mailbox == address:
            return {mb.folder_path(f) for f in state.subscribed_ids}
    return set()


def _backdate(h, item_id, hours=1):
    """Make an item look received an hour ago, so "already there when the rule appeared" is unambiguous
    (EWS times have whole seconds; a mail received in the second a rule appears counts as new)."""
    store = h.sim.store
    with store.lock:
        item = store.item_by_id(store.mailbox(ALICE), item_id)
        item.received -= timedelta(hours=hours)


def _synced(h, path):
    box = mailbox_status(h.database_url, ALICE)
    return any(f["path"] == path and f["last_sync_at"] for f in box["folders"])


def _sentinel(h, subject):
    _file(h, subject, "Inbox/Sentinel")
    h.wait_tracked(subject, regarding_id="acc-fabrikam")
    h.settle()


def test_valid_rules_are_applied_without_restart(harness):
    _setup(harness)
    harness.sim.deliver(ALICE, _mail("waiting in fabrikam"), folder="Inbox/Customers/Fabrikam")
    waiting = harness.sim.deliver(ALICE, _mail("waiting in projects"), folder="Inbox/Projects")
    _backdate(harness, waiting)
    harness.start_watcher()
    _file(harness, "old rule mail", "Inbox/Customers/Contoso")
    harness.wait_tracked("old rule mail", regarding_id="acc-contoso")
    assert _subscribed_paths(harness, ALICE) == {"Inbox/Customers/Contoso", "Inbox/Sentinel"}

    harness.write_rules(NEW_RULES)
    # a newly tracked folder is backfilled per its option (default true) and subscribed
    harness.wait_tracked("waiting in fabrikam", regarding_id="acc-fabrikam")
    harness.wait_for(
        lambda: (
            _subscribed_paths(harness, ALICE)
            == {"Inbox/Sentinel", "Inbox/Customers/Fabrikam", "Inbox/Projects"}
        ),
        what="alice's subscription to follow the new rules",
    )
    # filed once Projects has its baseline (before it, see test_mail_received_in_the_second_...)
    harness.wait_for(lambda: _synced(harness, "Inbox/Projects"), what="the baseline sync of Projects")
    _file(harness, "new rule mail", "Inbox/Customers/Fabrikam")
    _file(harness, "into projects", "Inbox/Projects")
    harness.wait_tracked("new rule mail", regarding_id="acc-fabrikam")
    harness.wait_tracked("into projects", regarding_id=None)
    # a mailbox that appeared in the rules is watched too
    _file(harness, "bob's mail", "Inbox/Customers/Contoso", address=BOB)
    harness.wait_tracked("bob's mail", regarding_id="acc-contoso", mailbox=BOB)

    # the removed folder is no longer tracked (its activities stay as they were)
    _file(harness, "after removal", "Inbox/Customers/Contoso")
    _sentinel(harness, "sentinel")
    assert harness.activity("after removal") is None
    assert harness.activity("waiting in projects") is None  # backfill: false
    assert harness.activity("old rule mail")["regarding_id"] == "acc-contoso"
    paths = {f["path"] for f in mailbox_status(harness.database_url, ALICE)["folders"]}
    assert paths == {"Inbox/Sentinel", "Inbox/Customers/Fabrikam", "Inbox/Projects"}


def test_invalid_rules_are_logged_and_the_old_rules_stay(harness, caplog):
    caplog.set_level(logging.INFO, logger="foldertrack")
    _setup(harness)
    harness.start_watcher()
    path = harness.write_rules(
        OLD_RULES.replace("account:acc-contoso", "acount:acc-contoso")  # line 5
        + "      Inbox/Customers/Fabrikam:\n        record: account:acc-fabrikam\n        on_leave: maybe\n"
    )

    def rejected():
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rules not reloaded: ")]

    problems = harness.wait_for(
        lambda: (
            len(rejected()) >= 2
            and any("keeping the previous" in r.getMessage() for r in caplog.records)
            and rejected()
        ),
        what="the rejected rules in the log",
    )
    assert any(p.startswith(f"rules not reloaded: {path}:5: ") and "acount" in p for p in problems), problems
    assert any(p.startswith(f"rules not reloaded: {path}:9: ") and "maybe" in p for p in problems), problems
    assert all(r.levelno == logging.ERROR for r in caplog.records if r.getMessage() in problems)

    # the old rules are still in force
    _file(harness, "still tracked", "Inbox/Customers/Contoso")
    harness.wait_tracked("still tracked", regarding_id="acc-contoso")
    _file(harness, "not yet tracked", "Inbox/Customers/Fabrikam")
    _sentinel(harness, "sentinel")
    assert harness.activity("not yet tracked") is None

    # a broken YAML file and an empty directory are rejected the same way
    caplog.clear()
    path.write_text("mailboxes: [\n", encoding="utf-8")
    harness.wait_for(lambda: any(f"{path}:" in p for p in rejected()), what="the YAML error")
    caplog.clear()
    path.unlink()
    harness.wait_for(lambda: any("no rule files" in p for p in rejected()), what="the missing rules")
    _file(harness, "still tracked after", "Inbox/Customers/Contoso")
    harness.wait_tracked("still tracked after", regarding_id="acc-contoso")

    # and a valid set afterwards is applied
    harness.write_rules(OLD_RULES.replace("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam"))
    harness.wait_tracked("not yet tracked", regarding_id="acc-contoso")  # backfilled: the rule is new


def test_mail_received_in_the_second_the_rule_appeared_is_tracked(harness):
    from sqlalchemy import select

    from foldertrack.state.schema import tracked_folders

    _setup(harness)
    harness.start_watcher()
    delivered = []

    def deliver_during_resubscribe(response):
        # the reload's folder plan is committed and the baseline sync of Projects is still queued
        if response.tag.endswith("SubscribeResponse") and not delivered:
            with harness.engine.connect() as conn:
                created = conn.execute(
                    select(tracked_folders.c.created_at).where(
                        tracked_folders.c.current_path == "Inbox/Projects"
                    )
                ).scalar_one()
            item = harness.sim.deliver(ALICE, _mail("same second"), folder="Inbox/Projects")
            store = harness.sim.store
            with store.lock:  # EWS times have whole seconds: received in the second the rule appeared
                store.item_by_id(store.mailbox(ALICE), item).received = created.replace(microsecond=0)
            delivered.append(item)

    harness.sim.add_observer(deliver_during_resubscribe)
    harness.write_rules(NEW_RULES)
    harness.wait_for(lambda: delivered, what="the resubscribe after the reload")
    _sentinel(harness, "sentinel")
    assert harness.activity("same second") is not None


def test_reading_the_rules_does_not_trigger_another_reload(harness, caplog):
    caplog.set_level(logging.INFO, logger="foldertrack.watch")
    _setup(harness)
    harness.start_watcher()

    def reloads():
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rules reloaded")]

    harness.write_rules(NEW_RULES)
    harness.wait_for(reloads, what="the reload")
    with pytest.raises(AssertionError, match="timed out"):  # bounded: a reload would come within 0.3 s
        wait_until(lambda: len(reloads()) > 1, timeout=1.0, what="a reload nobody asked for")
