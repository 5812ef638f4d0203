"""Feedback in the mailbox, against the EWS simulator through exchangelib: the Outlook category lands on the
mail's current item, keeps the user's own categories, survives a racing change and a move, turns itself
off on a read-only mailbox (visible in the database for ``status``), never raises, and never makes the
watcher track the mail again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree
from sqlalchemy import func, select

from foldertrack.cli.status_cmd import render_text
from foldertrack.delivery.feedback import MailboxFeedback, feedback_rows
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.ops.status import collect_status
from foldertrack.retry import Backoff
from foldertrack.simulator import MailSpec
from foldertrack.sources.ews import EwsSource
from foldertrack.state import ledger_store
from foldertrack.state import watch_store as store
from foldertrack.state.schema import activities, dead_letters, ledger
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, Harness, options_for_tests

ALICE = "alice@example.com"
CONTOSO = "Inbox/Customers/Contoso"
FABRIKAM = "Inbox/Customers/Fabrikam"
RULES = f"""
mailboxes:
  - addresses: [{ALICE}]
    folders:
      {CONTOSO}: account:acc-contoso
      {FABRIKAM}: account:acc-fabrikam
"""
RECORDS = "type,id,name,number,emails\naccount,acc-contoso,Contoso,,\naccount,acc-fabrikam,Fabrikam,,\n"


def source_for(h: Harness) -> EwsSource:
    """The EWS source feedback writes through (the watcher's own in production)."""
    settings = ExchangeSettings(
        endpoint=h.sim.url, auth="basic", username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD
    )
    return EwsSource(ExchangeConnector(settings, max_connections=4))


@pytest.fixture
def world(simulator_factory, tmp_path):
    """A tracked mail ("Quote", categorised "Red" by its owner) in Contoso; the watcher is running."""
    sim = simulator_factory(heartbeat=0.5)
    with Harness(tmp_path, simulator=sim, **options_for_tests()) as h:
        h.import_records(RECORDS)
        mailbox = h.add_mailbox(ALICE)
        for path in (CONTOSO, FABRIKAM):
            mailbox.create_folder(path)
        h.write_rules(RULES)
        h.start_watcher()
        item = mailbox.deliver(MailSpec(subject="Quote", sender="dana@contoso.com", to=[ALICE], body="hi"))
        mailbox.set_categories(item, ["Red"])
        mailbox.move_item(item, CONTOSO)
        h.wait_tracked("Quote", regarding_id="acc-contoso")
        h.settle()
        source = source_for(h)
        feedback = MailboxFeedback(source, h.engine, backoff=Backoff(initial=0.01, maximum=0.05))
        try:
            yield h, mailbox, feedback
        finally:
            feedback.close()
            source.close()


class UpdatesSeen:
    """Counts ``t:Update`` changes in the SyncFolderItems responses the watcher gets: proof it saw a mark."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, response: etree._Element) -> None:
        if etree.QName(response).localname == "SyncFolderItemsResponse":
            self.count += sum(1 for e in response.iter() if etree.QName(e).localname == "Update")


def key_of(h: Harness, subject: str) -> str:
    return h.activity(subject)["key"]


def categories(mailbox, folder: str = CONTOSO) -> tuple[str, ...]:
    [item] = mailbox.items(folder)
    return item.categories


def counts_row(h: Harness):
    with h.engine.connect() as conn:
        return {r.mailbox: r for r in feedback_rows(conn)}.get(ALICE)


def test_confirmed_adds_the_category_and_keeps_the_users_own(world):
    h, mailbox, feedback = world
    key = key_of(h, "Quote")
    feedback.confirmed(ALICE, key)
    assert feedback.wait_idle()
    assert categories(mailbox) == ("Red", "Tracked to CRM")

    updates = h.sim.stats["UpdateItem"]
    feedback.confirmed(ALICE, key)  # already there: read, nothing written
    assert feedback.wait_idle()
    assert h.sim.stats["UpdateItem"] == updates

    feedback.failed(ALICE, key, "HTTP 400: bad subject")
    assert feedback.wait_idle()
    assert categories(mailbox) == ("Red", "Tracking failed")
    feedback.confirmed(ALICE, key)  # `foldertrack retry` delivered it after all
    assert feedback.wait_idle()
    assert categories(mailbox) == ("Red", "Tracked to CRM")
    assert feedback.counts["confirmed"] == 3 and feedback.counts["failed"] == 1
    assert not feedback.counts["errors"]
    feedback.close()
    row = counts_row(h)
    assert row.available and row.confirmed == 3 and row.failed == 1 and row.errors == 0


def test_the_category_change_does_not_track_the_mail_again(world):
    h, mailbox, feedback = world
    with h.engine.connect() as conn:
        before = conn.execute(select(activities.c.key, activities.c.updated_at)).all()
        ledger_before = conn.execute(select(ledger.c.item_id, ledger.c.state, ledger.c.updated_at)).all()
    updates = UpdatesSeen()
    h.sim.add_observer(updates)

    feedback.confirmed(ALICE, key_of(h, "Quote"))
    assert feedback.wait_idle()
    assert categories(mailbox) == ("Red", "Tracked to CRM")
    # the watcher hears of the change (streaming) and syncs the folder: Exchange reports an Update
    h.wait_for(lambda: updates.count >= 1, what="the watcher's sync to report the Update")
    h.settle()

    with h.engine.connect() as conn:
        assert conn.execute(select(activities.c.key, activities.c.updated_at)).all() == before
        assert (
            conn.execute(select(ledger.c.item_id, ledger.c.state, ledger.c.updated_at)).all() == ledger_before
        )
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar() == 0
    assert h.watcher.totals.tracked == 1 and h.watcher.totals.relinked == 0


def test_a_change_racing_the_write_is_kept_the_item_is_read_again_once(world):
    h, mailbox, feedback = world
    h.stop_watcher()
    [item] = mailbox.items(CONTOSO)
    raced = []

    def user_recategorises(response: etree._Element) -> None:
        # after our GetItem read the ChangeKey, the owner adds "Blue" on her phone
        if etree.QName(response).localname == "GetItemResponse" and not raced:
            raced.append(True)
            mailbox.set_categories(item.id, ["Red", "Blue"])

    h.sim.add_observer(user_recategorises)
    updates = h.sim.stats["UpdateItem"]
    feedback.confirmed(ALICE, key_of(h, "Quote"))
    assert feedback.wait_idle()
    assert raced
    assert categories(mailbox) == ("Red", "Blue", "Tracked to CRM")
    assert h.sim.stats["UpdateItem"] == updates + 2  # refused with ErrorIrresolvableConflict, then done
    assert feedback.counts["confirmed"] == 1 and not feedback.counts["errors"]


def test_an_item_that_moved_is_looked_up_again(world):
    h, mailbox, feedback = world
    h.stop_watcher()
    key = key_of(h, "Quote")
    [old] = mailbox.items(CONTOSO)
    new_id = mailbox.move_item(old.id, FABRIKAM)  # the ledger still has the old id

    def sync_catches_up(response: etree._Element) -> None:
        # the watcher records the move while feedback's first GetItem answers "not found"
        if etree.QName(response).localname == "GetItemResponse" and "ErrorItemNotFound" in etree.tostring(
            response, encoding="unicode"
        ):
            with store.writing(h.engine) as conn:
                fabrikam = mailbox.folder_id(FABRIKAM)
                ledger_store.ledger_present(conn, ALICE, key, fabrikam, new_id)
                entry = ledger_store.ledger_entry(conn, ALICE, key, mailbox.folder_id(CONTOSO))
                ledger_store.ledger_left(conn, entry.id)

    h.sim.add_observer(sync_catches_up)
    feedback.confirmed(ALICE, key)
    assert feedback.wait_idle()
    assert categories(mailbox, FABRIKAM) == ("Red", "Tracked to CRM")
    assert feedback.counts["confirmed"] == 1


def test_a_mail_that_left_the_tracked_folders_is_skipped_quietly(world):
    h, mailbox, feedback = world
    key = key_of(h, "Quote")
    [item] = mailbox.items(CONTOSO)
    mailbox.move_item(item.id, "Inbox")
    h.wait_for(lambda: not store_present(h, key), what="the ledger to see the mail leave")
    feedback.confirmed(ALICE, key)
    assert feedback.wait_idle()
    assert categories(mailbox, "Inbox") == ("Red",)
    assert feedback.counts["missing"] == 1 and not feedback.counts["errors"]


def store_present(h: Harness, key: str) -> bool:
    with h.engine.connect() as conn:
        return ledger_store.still_present(conn, key)


def test_read_only_rights_turn_feedback_off_for_the_mailbox_and_say_so(world):
    h, mailbox, feedback = world
    h.sim.store.read_only.add(ALICE)  # the service account has Reviewer rights only
    key = key_of(h, "Quote")
    feedback.confirmed(ALICE, key)
    assert feedback.wait_idle()
    assert categories(mailbox) == ("Red",)
    assert feedback.unavailable()[ALICE].startswith("ErrorAccessDenied")
    row = counts_row(h)
    assert not row.available and row.reason.startswith("ErrorAccessDenied")
    report = collect_status(h.engine)  # `foldertrack status` says so, per mailbox and in the totals
    (box,) = [m for m in report["mailboxes"] if m["mailbox"] == ALICE]
    assert box["feedback"]["available"] is False and "ErrorAccessDenied" in box["feedback"]["reason"]
    assert report["totals"]["feedback_unavailable"] == 1
    text = "\n".join(render_text(report, datetime.now(UTC)))
    assert (
        "feedback          unavailable: ErrorAccessDenied" in text or "unavailable: ErrorAccessDenied" in text
    )

    reads = h.sim.stats["GetItem"]
    feedback.confirmed(ALICE, key)  # off now: no more EWS calls for this mailbox
    assert feedback.wait_idle()
    assert h.sim.stats["GetItem"] == reads and h.sim.stats["UpdateItem"] == 1
    assert feedback.counts["skipped"] == 1

    # rights granted; the next process tries again and says feedback works
    h.sim.store.read_only.discard(ALICE)
    source = source_for(h)
    again = MailboxFeedback(source, h.engine)
    try:
        again.confirmed(ALICE, key)
        assert again.wait_idle()
    finally:
        again.close()
        source.close()
    assert categories(mailbox) == ("Red", "Tracked to CRM")
    row = counts_row(h)
    assert row.available and row.reason is None


def test_exchange_failures_are_retried_then_counted_never_raised(world):
    h, mailbox, feedback = world
    h.stop_watcher()
    h.sim.faults.http_error(500, requests=100)
    feedback.confirmed(ALICE, key_of(h, "Quote"))  # returns at once, whatever happens
    assert feedback.wait_idle()
    assert feedback.counts["retried"] == feedback.max_attempts - 1
    assert feedback.counts["errors"] == 1 and not feedback.counts["confirmed"]
    h.sim.faults.clear()
    feedback.close()
    row = counts_row(h)
    assert row.errors == 1 and "500" in row.last_error and row.available
    assert categories(mailbox) == ("Red",)


def test_throttling_waits_for_the_servers_back_off_and_then_marks(world):
    h, mailbox, feedback = world
    h.stop_watcher()
    h.sim.faults.server_busy(requests=2, backoff_ms=150)
    feedback.confirmed(ALICE, key_of(h, "Quote"))
    assert feedback.wait_idle()
    assert categories(mailbox) == ("Red", "Tracked to CRM")
    assert feedback.counts["retried"] == 2 and feedback.counts["confirmed"] == 1
    assert not feedback.counts["errors"]


def test_a_retry_never_undoes_a_newer_mark_of_the_same_mail(world):
    h, mailbox, _ = world
    h.stop_watcher()
    source = source_for(h)
    slow = MailboxFeedback(source, h.engine, backoff=Backoff(initial=2.0, maximum=2.0))
    try:
        key = key_of(h, "Quote")
        h.sim.faults.http_error(503, requests=1)
        slow.confirmed(ALICE, key)  # fails once, due again in 2 s
        h.wait_for(lambda: slow.counts["retried"] == 1, what="the first attempt to fail")
        slow.failed(ALICE, key, "HTTP 400")  # the CRM's later verdict, delivered meanwhile
        assert slow.wait_idle()
    finally:
        slow.close()
        source.close()
    assert categories(mailbox) == ("Red", "Tracking failed")
    assert slow.counts["failed"] == 1 and slow.counts["skipped"] == 1 and not slow.counts["confirmed"]


def test_settings_name_the_categories(world):
    h, _, _ = world
    from foldertrack.config import parse_config

    config = parse_config(
        {"delivery": {"feedback_category": "In Dynamics", "failed_category": "Not in Dynamics"}}, env={}
    )
    feedback = MailboxFeedback(None, h.engine, config)
    assert (feedback.category, feedback.failed_category) == ("In Dynamics", "Not in Dynamics")
    defaults = parse_config({}, env={}).delivery
    assert (defaults.feedback, defaults.feedback_category, defaults.failed_category) == (
        True,
        "Tracked to CRM",
        "Tracking failed",
    )


def test_end_to_end_delivery_marks_mails_and_the_mark_sends_nothing_again(
    simulator_factory, tmp_path, webhook_receiver
):
    from foldertrack.sinks.webhook import WebhookActivitySink
    from foldertrack.testing.webhook_receiver import Answer
    from tests.sinks.test_webhook import SECRET, pending_entries, start_watcher_with

    sim = simulator_factory(heartbeat=0.5)
    with Harness(tmp_path, simulator=sim, **options_for_tests()) as h:
        h.import_records(RECORDS)
        mailbox = h.add_mailbox(ALICE)
        for path in (CONTOSO, FABRIKAM):
            mailbox.create_folder(path)
        h.write_rules(RULES)
        updates = UpdatesSeen()
        h.sim.add_observer(updates)
        start_watcher_with(h, WebhookActivitySink(webhook_receiver.url, SECRET), MailboxFeedback)

        webhook_receiver.answer(Answer(400, body={"error": {"message": "no such account"}}))
        bad = mailbox.deliver(MailSpec(subject="Bad", sender="dana@contoso.com", to=[ALICE], body="x"))
        mailbox.move_item(bad, FABRIKAM)
        h.wait_for(lambda: categories(mailbox, FABRIKAM) == ("Tracking failed",), what="the failed mark")
        good = mailbox.deliver(MailSpec(subject="Quote", sender="dana@contoso.com", to=[ALICE], body="y"))
        mailbox.set_categories(good, ["Red"])
        mailbox.move_item(good, CONTOSO)
        h.wait_for(lambda: categories(mailbox) == ("Red", "Tracked to CRM"), what="the tracked mark")

        # both marks were seen by the watcher as updates, and nothing went to the CRM again
        h.wait_for(lambda: updates.count >= 2, what="the watcher's syncs to report both marks")
        h.settle()
        h.wait_for(lambda: pending_entries(h) == 0, what="an empty outbox")
        assert [r.status for r in webhook_receiver.requests] == [400, 201]
        assert [a["activity"]["subject"] for a in webhook_receiver.applied] == ["Quote"]
        assert h.watcher.totals.tracked == 2 and h.watcher.totals.relinked == 0
