"""A folder's catch-up that comes late never overrules the folder that now holds the mail.

A mail moves Contoso → Legal (re-linked by Legal's catch-up), then Legal → Inbox before Contoso's catch-up
of the first move has run. When it runs, Contoso's departure is old news: the regarding belongs to Legal,
so Legal's own catch-up applies Legal's ``on_leave`` (delete), not Contoso's (untrack). CI once saw the
webhook get ``untrack`` and never the ``delete``.

The catch-ups are run by hand (the watcher is stopped), in both orders and through both sources, so the
race is the test, every time: whichever folder catches up first, Legal's delete is the one decision.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.simulator import MailSpec
from foldertrack.sync import catch_up
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD
from tests.watch.conftest import ALICE, both_sources

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
CONTOSO, LEGAL = "Inbox/Customers/Contoso", "Inbox/Customers/Legal"


def _fresh_context(h, watcher, source: str):
    """The stopped watcher's sync context on a new connection (stopping closed the old one)."""
    ctx = watcher.sync_context
    if source == "graph":
        from foldertrack.testing.graph_watch import graph_source

        return replace(ctx, source=graph_source(h.sim, engine=h.engine), fence=None)
    connector = ExchangeConnector(
        ExchangeSettings(
            endpoint=h.sim.url, auth="basic", username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD
        ),
        max_connections=2,
    )
    return replace(ctx, connector=connector, source=None, fence=None)


@both_sources
@pytest.mark.parametrize("first", [CONTOSO, LEGAL], ids=["late-folder-first", "owner-first"])
def test_a_late_departure_leaves_the_decision_to_the_folder_now_holding_the_mail(harness, source, first):
    h = harness
    mailbox = h.add_mailbox(ALICE)
    for path in (CONTOSO, LEGAL):
        mailbox.create_folder(path)
    h.write_rules(RULES)
    watcher = h.start_watcher()
    item = mailbox.deliver(MailSpec(subject="Quote", to=[ALICE]), folder="Inbox")
    mailbox.move_item(item, CONTOSO)
    h.wait_tracked("Quote", regarding_id="acc-contoso", state="tracked")
    h.settle()
    targets = {t.path: t for t in watcher._mailboxes[ALICE].targets.values()}
    h.stop_watcher()  # from here on, only the catch-ups below run, in this order

    ctx = _fresh_context(h, watcher, source)
    try:
        [current] = mailbox.item_ids(CONTOSO)
        moved = mailbox.move_item(current, LEGAL)
        catch_up(ctx, targets[LEGAL])  # Legal first: re-linked
        assert h.activity("Quote")["regarding_id"] == "acc-fabrikam"

        mailbox.move_item(moved, "Inbox")  # out of Legal before Contoso has caught up
        second = LEGAL if first == CONTOSO else CONTOSO
        events = [e[0] for path in (first, second) for e in catch_up(ctx, targets[path]).events]
        assert [e for e in events if e in ("untracked", "deleted")] == ["deleted"]  # Legal's on_leave, once
        assert h.activity("Quote")["state"] == "untracked"
    finally:
        ctx.mail_source().close()
