"""Every row of DESIGN "Tracking semantics", end to end: simulator + watcher + SQLite, read through EWS
(exchangelib, streaming) and through Microsoft Graph (delta polling) alike (``both_sources``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from foldertrack.simulator import MailSpec
from foldertrack.state.schema import tracked_folders
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.harness import USER_PASSWORD, wait_until
from foldertrack.watch.observer import WatchObserver
from tests.watch.conftest import ALICE, BOB, both_sources

RULES = f"""
mailboxes:
  - addresses: [{ALICE}, {BOB}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam:
        record: account:acc-fabrikam
      Inbox/Untracked-Record:
        record: null
      Inbox/Leave-Untrack:
        record: account:acc-fabrikam
        on_leave: untrack
"""
#: one mail sent to two mailboxes has one Date: built at each delivery instead, the two copies could differ
#: by a second and count as a different mail reusing the Message-ID (a collision, not tracked)
SENT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _setup(h, rules=RULES, mailboxes=(ALICE, BOB)):
    for address in mailboxes:
        mb = h.add_mailbox(address)
        for path in (
            "Inbox/Customers/Contoso",
            "Inbox/Customers/Fabrikam",
            "Inbox/Untracked-Record",
            "Inbox/Leave-Untrack",
            "Inbox/Elsewhere",
        ):
            mb.create_folder(path)
    h.write_rules(rules)


def _mail(subject, **kw):
    kw.setdefault("sender", "dana@contoso.com")
    kw.setdefault("to", [ALICE])
    kw.setdefault("message_id", f"<{subject.replace(' ', '-')}@example.com>")
    return MailSpec(subject=subject, body=f"body of {subject}", **kw)


@both_sources
def test_moved_in_is_tracked_with_record_and_parties(harness):
    _setup(harness)
    harness.start_watcher()
    mb = harness.sim.mailbox(ALICE)
    item = harness.sim.deliver(ALICE, _mail("hello contoso", cc=["someone@else.com"]), folder="Inbox")
    mb.move_item(item, "Inbox/Customers/Contoso")
    a = harness.wait_tracked("hello contoso", regarding_id="acc-contoso")
    assert a["regarding_type"] == "account" and a["state"] == "tracked"
    assert a["mailbox"] == ALICE and a["direction"] == "incoming"
    assert a["message_id"] == "<hello-contoso@example.com>"
    parties = {(p["role"], p["address"]): p for p in harness.parties(a["key"])}
    assert parties[("from", "dana@contoso.com")]["record_id"] == "con-dana"
    assert parties[("to", ALICE)]["record_id"] is None
    assert ("cc", "someone@else.com") in parties


@both_sources
def test_delivered_into_folder_copied_in_and_created_are_tracked(harness):
    from exchangelib import Message

    _setup(harness)
    harness.start_watcher()
    harness.sim.deliver(ALICE, _mail("delivered by rule"), folder="Inbox/Customers/Fabrikam")
    harness.wait_tracked("delivered by rule", regarding_id="acc-fabrikam")
    item = harness.sim.deliver(ALICE, _mail("copied in"), folder="Inbox")
    harness.sim.mailbox(ALICE).copy_item(item, "Inbox/Customers/Contoso")
    harness.wait_tracked("copied in", regarding_id="acc-contoso")
    account = exchangelib_account(harness.sim, ALICE, USER_PASSWORD)
    try:  # saved straight into the folder by a client (CreateItem), never delivered
        folder = account.inbox / "Customers" / "Contoso"
        Message(
            account=account, folder=folder, subject="created", body="typed in", to_recipients=[BOB]
        ).save()
    finally:
        account.protocol.close()
    harness.wait_tracked("created", regarding_id="acc-contoso")


@both_sources
def test_rule_without_record_tracks_without_regarding(harness):
    _setup(harness)
    harness.start_watcher()
    item = harness.sim.deliver(ALICE, _mail("no record"), folder="Inbox")
    harness.sim.mailbox(ALICE).move_item(item, "Inbox/Untracked-Record")
    a = harness.wait_tracked("no record")
    assert a["regarding_id"] is None and a["state"] == "tracked"


@both_sources
def test_moved_between_tracked_folders_relinks_once(harness):
    _setup(harness)
    harness.start_watcher()
    mb = harness.sim.mailbox(ALICE)
    item = harness.sim.deliver(ALICE, _mail("refile me"), folder="Inbox")
    item = mb.move_item(item, "Inbox/Customers/Contoso")
    harness.wait_tracked("refile me", regarding_id="acc-contoso")
    mb.move_item(item, "Inbox/Customers/Fabrikam")
    harness.wait_tracked("refile me", regarding_id="acc-fabrikam")
    harness.settle()
    assert len(harness.activities()) == 1


@both_sources
def test_moved_out_keep_and_untrack(harness):
    _setup(harness)
    harness.start_watcher()
    mb = harness.sim.mailbox(ALICE)
    kept = mb.move_item(
        harness.sim.deliver(ALICE, _mail("keep me"), folder="Inbox"), "Inbox/Customers/Contoso"
    )
    gone = mb.move_item(
        harness.sim.deliver(ALICE, _mail("untrack me"), folder="Inbox"), "Inbox/Leave-Untrack"
    )
    harness.wait_tracked("keep me")
    harness.wait_tracked("untrack me", regarding_id="acc-fabrikam")
    mb.move_item(kept, "Inbox/Elsewhere")
    mb.move_item(gone, "Inbox/Elsewhere")
    harness.wait_tracked("untrack me", state="untracked", regarding_id=None)
    harness.settle()
    assert harness.activity("keep me")["state"] == "tracked"
    assert harness.activity("keep me")["regarding_id"] == "acc-contoso"


class _Decisions(WatchObserver):
    """The decisions of every committed catch-up (``("untracked" | "deleted", key, "")``…)."""

    def __init__(self):
        self.events = []

    def sync_finished(self, mailbox, folder_path, seconds, result, trigger_age):
        self.events.extend(result.events)


@both_sources
def test_moved_out_with_on_leave_delete_untracks_and_decides_a_delete(harness):
    _setup(harness, rules=RULES.replace("on_leave: untrack", "on_leave: delete"))
    decisions = _Decisions()
    harness.start_watcher(observer=decisions)
    mb = harness.sim.mailbox(ALICE)
    item = mb.move_item(
        harness.sim.deliver(ALICE, _mail("delete me in the crm"), folder="Inbox"), "Inbox/Leave-Untrack"
    )
    key = harness.wait_tracked("delete me in the crm", regarding_id="acc-fabrikam")["key"]
    mb.move_item(item, "Inbox/Elsewhere")
    # kept locally, marked; the CRM copy this mailbox created is deleted (the decision a CRM sink delivers)
    harness.wait_tracked("delete me in the crm", state="untracked", regarding_id=None)
    wait_until(lambda: ("deleted", key, "") in decisions.events, 5, "a delete decision")
    assert not any(event[0] == "untracked" for event in decisions.events)


@both_sources
def test_deleted_in_exchange_keeps_activity(harness):
    _setup(harness)
    harness.start_watcher()
    mb = harness.sim.mailbox(ALICE)
    item = mb.move_item(
        harness.sim.deliver(ALICE, _mail("delete me"), folder="Inbox"), "Inbox/Customers/Contoso"
    )
    harness.wait_tracked("delete me")
    mb.delete_item(item, hard=True)
    harness.settle()
    assert harness.activity("delete me")["state"] == "tracked"


@both_sources
def test_old_mail_moved_back_in_is_tracked_again(harness):
    _setup(
        harness,
        rules=RULES.replace(
            "        on_leave: untrack", "        on_leave: untrack\n        backfill: false"
        ),
    )
    mb = harness.sim.mailbox(ALICE)
    old = harness.sim.deliver(ALICE, _mail("old mail"), folder="Inbox/Leave-Untrack")
    _backdate(harness, ALICE, old, datetime.now(UTC) - timedelta(minutes=5))  # clearly before the rule
    harness.start_watcher()
    harness.settle()
    assert harness.activity("old mail") is None  # backfill: false
    moved = mb.move_item(old, "Inbox/Elsewhere")
    mb.move_item(moved, "Inbox/Leave-Untrack")
    harness.wait_tracked("old mail", regarding_id="acc-fabrikam")


@both_sources
def test_backfill_on_and_since(harness, caplog):
    caplog.set_level(logging.INFO, logger="foldertrack")
    rules = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam:
        record: account:acc-fabrikam
        backfill_since: 30d
"""
    _setup(harness, rules=rules, mailboxes=(ALICE,))
    now = datetime.now(UTC)
    harness.sim.deliver(ALICE, _mail("existing contoso"), folder="Inbox/Customers/Contoso")
    harness.sim.deliver(ALICE, _mail("recent fabrikam"), folder="Inbox/Customers/Fabrikam")
    ancient = harness.sim.deliver(
        ALICE, _mail("ancient fabrikam", sent_at=now - timedelta(days=90)), folder="Inbox/Customers/Fabrikam"
    )
    _backdate(harness, ALICE, ancient, now - timedelta(days=90))
    harness.start_watcher()
    harness.wait_tracked("existing contoso")
    harness.wait_tracked("recent fabrikam")
    harness.settle()
    assert harness.activity("ancient fabrikam") is None
    assert "Inbox/Customers/Fabrikam: 1 mail(s) not backfilled: received before" in caplog.text  # a reason


@both_sources
def test_same_message_from_two_mailboxes_first_wins_records_conflict(harness):
    _setup(harness)
    harness.start_watcher()
    spec = _mail("shared mail", to=[ALICE, BOB], sent_at=SENT)
    a_item = harness.sim.deliver(ALICE, spec, folder="Inbox")
    harness.sim.mailbox(ALICE).move_item(a_item, "Inbox/Customers/Contoso")
    harness.wait_tracked("shared mail", regarding_id="acc-contoso")
    b_item = harness.sim.deliver(BOB, spec, folder="Inbox")
    harness.sim.mailbox(BOB).move_item(b_item, "Inbox/Customers/Fabrikam")
    harness.wait_for(lambda: _conflicts(harness), what="a recorded conflict")
    harness.settle()
    activity = harness.activity("shared mail")
    assert activity["regarding_id"] == "acc-contoso" and activity["mailbox"] == ALICE


@both_sources
def test_same_message_last_wins(harness):
    _setup(
        harness,
        rules=RULES.replace(
            "        record: account:acc-fabrikam\n      Inbox/Untracked",
            "        record: account:acc-fabrikam\n        duplicates: last_wins\n      Inbox/Untracked",
        ),
    )
    harness.start_watcher()
    spec = _mail("last wins mail", to=[ALICE, BOB], sent_at=SENT)
    harness.sim.mailbox(ALICE).move_item(
        harness.sim.deliver(ALICE, spec, folder="Inbox"), "Inbox/Customers/Contoso"
    )
    harness.wait_tracked("last wins mail", regarding_id="acc-contoso")
    harness.sim.mailbox(BOB).move_item(
        harness.sim.deliver(BOB, spec, folder="Inbox"), "Inbox/Customers/Fabrikam"
    )
    harness.wait_tracked("last wins mail", regarding_id="acc-fabrikam", mailbox=BOB)
    assert len(harness.activities()) == 1


def _next_second() -> None:
    """Exchange stamps times in whole seconds: wait until the server's clock has just ticked."""
    start = datetime.now(UTC).replace(microsecond=0)
    wait_until(lambda: datetime.now(UTC).replace(microsecond=0) > start, 2, "the clock to tick")


@both_sources
def test_copied_into_two_tracked_folders_while_behind_the_last_arrival_decides(harness):
    """Copies made while nothing watches: the later copy by the server's clock decides, whatever order the
    folders are caught up in; copies within one second go to the greater folder id."""
    _setup(harness, rules=RULES.replace(f"[{ALICE}, {BOB}]", f"[{ALICE}]"), mailboxes=(ALICE,))
    harness.start_watcher()
    harness.stop_watcher()
    mb = harness.sim.mailbox(ALICE)
    contoso, fabrikam = "Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam"
    first = harness.sim.deliver(ALICE, _mail("to Fabrikam then Contoso"), folder="Inbox")
    second = harness.sim.deliver(ALICE, _mail("to Contoso then Fabrikam"), folder="Inbox")
    tie = harness.sim.deliver(ALICE, _mail("both at once"), folder="Inbox")
    mb.copy_item(first, fabrikam)
    mb.copy_item(second, contoso)
    _next_second()
    mb.copy_item(first, contoso)
    mb.copy_item(second, fabrikam)
    _next_second()  # both copies just after the tick: within one second
    mb.copy_item(tie, contoso)
    mb.copy_item(tie, fabrikam)
    harness.start_watcher()
    with harness.engine.connect() as conn:  # the folder ids as this source names them
        ids = dict(conn.execute(select(tracked_folders.c.current_path, tracked_folders.c.folder_id)).all())
    greater = "acc-contoso" if ids[contoso] > ids[fabrikam] else "acc-fabrikam"
    harness.wait_tracked("to Fabrikam then Contoso", regarding_id="acc-contoso")
    harness.wait_tracked("to Contoso then Fabrikam", regarding_id="acc-fabrikam")
    harness.wait_tracked("both at once", regarding_id=greater)
    harness.settle()
    assert {a["subject"]: a["regarding_id"] for a in harness.activities()} == {
        "to Fabrikam then Contoso": "acc-contoso",
        "to Contoso then Fabrikam": "acc-fabrikam",
        "both at once": greater,
    }


def _conflicts(h):
    from foldertrack.state.schema import conflicts

    with h.engine.connect() as conn:
        return list(conn.execute(select(conflicts)))


def _backdate(h, address, item_id, when):
    """Make an item look received long ago (as a mailbox migrated from elsewhere would)."""
    store = h.sim.store
    with store.lock:
        store.item_by_id(store.mailbox(address), item_id).received = when


# EWS only: the event times come from the stream (a Graph mailbox polls, its mode is never "streaming")
def test_event_times_reach_the_health_table_without_the_stream_writing_them(harness):
    from foldertrack.state.schema import subscription_health

    _setup(harness)
    harness.start_watcher()
    harness.sim.mailbox(ALICE).move_item(
        harness.sim.deliver(ALICE, _mail("health"), folder="Inbox"), "Inbox/Customers/Contoso"
    )
    harness.wait_tracked("health")

    def last_event():
        with harness.engine.connect() as conn:
            row = conn.execute(
                select(subscription_health).where(subscription_health.c.mailbox == ALICE)
            ).first()
        return row is not None and row.last_event_at is not None and row.mode == "streaming"

    harness.wait_for(last_event, what="alice's last event time in subscription_health")
