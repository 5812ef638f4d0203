"""End to end on one simulator: records synced from Dataverse drive a pattern rule and party resolution;
a mail moved into a folder becomes an email activity in Dataverse through the outbox; moving it on
re-links it; moving it out with ``on_leave: untrack`` clears the regarding."""

from __future__ import annotations

from sqlalchemy import func, select

from foldertrack.crm.connect import connect
from foldertrack.crm.records_sync import RecordsSyncer
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.simulator import MailSpec
from foldertrack.sinks.dataverse import DataverseActivitySink, activity_id
from foldertrack.state.schema import outbox
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, Harness, options_for_tests
from foldertrack.watch.daemon import Watcher, WatchOptions

ALICE = "alice@example.com"
RULES = f"""
mailboxes:
  - addresses: [{ALICE}]
    defaults:
      on_leave: untrack
    folders:
      Inbox/Customers/*:
        record: {{type: account, by: name}}
"""


def start_watcher_with(h: Harness, sink: DataverseActivitySink) -> Watcher:
    """The harness's watcher with ``sink`` fed by the delivery outbox."""
    options = WatchOptions(rules_dir=h.rules_dir, **h.options)
    settings = ExchangeSettings(
        endpoint=h.sim.url, auth="basic", username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD
    )
    connector = ExchangeConnector(settings, max_connections=options.workers + 8)
    h.watcher = Watcher(options, h.engine, connector, sink)
    h.watcher.start()
    assert h.watcher.ready.wait(20), "watcher did not become ready"
    return h.watcher


def pending_entries(h: Harness) -> int:
    with h.engine.connect() as conn:
        query = select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
        return conn.execute(query).scalar()


def test_a_moved_mail_becomes_a_dataverse_email_regarding_the_synced_record(dataverse_factory, tmp_path):
    from foldertrack.testing.fixtures_dataverse_sink import make_dataverse_config

    context = dataverse_factory(heartbeat=0.5)
    crm = context.crm
    contoso = crm.add_account("Contoso Ltd", "C-1", "info@contoso.example")
    fabrikam = crm.add_account("Fabrikam Inc")
    dana = crm.add_contact("Dana Scully", "dana@contoso.example")
    config = make_dataverse_config(context)

    with Harness(tmp_path, simulator=context.sim, **options_for_tests()) as h:
        client = connect(config)
        try:
            RecordsSyncer(client, h.engine).sync()
        finally:
            client.close()
        mailbox = h.add_mailbox(ALICE)
        for path in ("Inbox/Customers/Contoso Ltd", "Inbox/Customers/Fabrikam Inc", "Inbox/Done"):
            mailbox.create_folder(path)
        h.write_rules(RULES)
        sink = DataverseActivitySink.create(config, h.engine)
        start_watcher_with(h, sink)
        try:
            item = mailbox.deliver(
                MailSpec(subject="Quote 7", sender="dana@contoso.example", to=[ALICE], body="Numbers inside")
            )
            item = mailbox.move_item(item, "Inbox/Customers/Contoso Ltd")
            key = h.wait_tracked("Quote 7")["key"]
            row = activity_id(key)

            email = h.wait_for(lambda: crm.email(row), what="the email in Dataverse")
            assert email["regarding"] == ("account", contoso)
            assert (1, ("contact", dana)) in email["parties"]
            assert (2, ALICE) in email["parties"]
            assert (email["statecode"], email["statuscode"]) == (1, 4)

            item = mailbox.move_item(item, "Inbox/Customers/Fabrikam Inc")
            h.wait_for(lambda: crm.email(row)["regarding"] == ("account", fabrikam), what="the re-link")

            mailbox.move_item(item, "Inbox/Done")
            h.wait_for(lambda: crm.email(row)["regarding"] is None, what="the untrack")
            h.settle()
            h.wait_for(lambda: pending_entries(h) == 0, what="an empty outbox")
            assert len(crm.emails()) == 1
        finally:
            h.stop_watcher()
            sink.close()
