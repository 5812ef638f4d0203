"""A folder's catch-up that comes late never overrules the folder that now holds the mail.

A mail moves Contoso → Legal (re-linked by Legal's catch-up), then Legal → Inbox before Contoso's catch-up
of the first move has run. When it runs, Contoso's departure is old news: the regarding belongs to Legal,
so Legal's own catch-up applies Legal's ``on_leave`` (delete), not Contoso's (untrack). CI once saw the
webhook get ``untrack`` and never the ``delete``.

The catch-ups are run by hand in that order (the watcher is stopped), so the race is the test, every time.
"""

from __future__ import annotations

from dataclasses import replace

from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.simulator import MailSpec
from foldertrack.sync import catch_up
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, Harness, options_for_tests

ALICE = "alice@example.com"
RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso:
        record: account:acc-contoso
        on_leave: untrack
      Inbox/Customers/Legal:
        record: account:acc-fabrikam
        on_leave: delete
"""


def test_a_late_departure_from_the_folder_a_mail_was_relinked_away_from_leaves_the_decision_to_the_new_one(
    simulator_factory, tmp_path
):
    sim = simulator_factory(heartbeat=0.5)
    with Harness(tmp_path, simulator=sim, **options_for_tests()) as h:
        h.import_records("type,id,name,number,emails\naccount,acc-contoso,C,,\naccount,acc-fabrikam,F,,\n")
        mailbox = h.add_mailbox(ALICE)
        for path in ("Inbox/Customers/Contoso", "Inbox/Customers/Legal"):
            mailbox.create_folder(path)
        h.write_rules(RULES)
        watcher = h.start_watcher()
        item = mailbox.deliver(MailSpec(subject="Quote", to=[ALICE]), folder="Inbox")
        mailbox.move_item(item, "Inbox/Customers/Contoso")
        h.wait_tracked("Quote", regarding_id="acc-contoso", state="tracked")
        h.settle()
        targets = {t.path: t for t in watcher._mailboxes[ALICE].targets.values()}
        h.stop_watcher()  # from here on, only the catch-ups below run, in this order

        connector = ExchangeConnector(
            ExchangeSettings(
                endpoint=sim.url, auth="basic", username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD
            ),
            max_connections=2,
        )
        ctx = replace(watcher.sync_context, connector=connector, source=None, fence=None)
        try:
            [current] = mailbox.item_ids("Inbox/Customers/Contoso")
            moved = mailbox.move_item(current, "Inbox/Customers/Legal")
            catch_up(ctx, targets["Inbox/Customers/Legal"])  # Legal first: re-linked
            assert h.activity("Quote")["regarding_id"] == "acc-fabrikam"

            mailbox.move_item(moved, "Inbox")  # out of Legal before Contoso has caught up
            late = catch_up(ctx, targets["Inbox/Customers/Contoso"])
            assert [e for e in late.events if e[0] in ("untracked", "deleted")] == []
            assert h.activity("Quote")["regarding_id"] == "acc-fabrikam"

            final = catch_up(ctx, targets["Inbox/Customers/Legal"])
            assert [e[0] for e in final.events if e[0] in ("untracked", "deleted")] == ["deleted"]
            assert h.activity("Quote")["state"] == "untracked"
        finally:
            connector.close()
