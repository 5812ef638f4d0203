"""One whole world per test, every part real: the simulator's EWS (through exchangelib) feeds a watcher, whose
outbox feeds the Dataverse sink (MSAL + requests over verified HTTPS), which writes into the simulator's
Dataverse; the tests read back what the CRM holds with ``sim.crm.emails()``.

Records come from the CRM itself (``records sync``), so rules, regarding and parties use real CRM ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from foldertrack.crm.connect import connect
from foldertrack.crm.records_sync import RecordsSyncer
from foldertrack.delivery.service import DeliveryOptions
from foldertrack.simulator import MailSpec
from foldertrack.sinks.dataverse import DataverseActivitySink
from foldertrack.state.schema import outbox
from foldertrack.testing.fixtures_dataverse import DataverseContext
from foldertrack.testing.fixtures_dataverse_sink import make_dataverse_config
from foldertrack.testing.harness import Harness, options_for_tests

ALICE = "alice@example.com"
BOB = "bob@example.com"
CONTOSO = "Inbox/Customers/Contoso"
FABRIKAM = "Inbox/Customers/Fabrikam"
NO_RECORD = "Inbox/No Record"
ELSEWHERE = "Inbox/Elsewhere"
FOLDERS = (CONTOSO, FABRIKAM, NO_RECORD, ELSEWHERE)
#: ``{contoso}`` etc. are replaced by the CRM ids of the seeded records
RULES = f"""
mailboxes:
  - addresses: [{ALICE}, {BOB}]
    defaults:
      on_leave: {{on_leave}}
      duplicates: {{duplicates}}
      backfill: {{backfill}}
    folders:
      {CONTOSO}: account:{{contoso}}
      {FABRIKAM}: account:{{fabrikam}}
      {NO_RECORD}:
        record: null
"""
#: quick retries for tests (the defaults wait up to minutes); the pause after a 429 still honours Retry-After
FAST = DeliveryOptions(
    workers=4, initial_backoff=0.05, max_backoff=0.5, scan_interval=0.2, unhealthy_after=60.0
)


def seed_crm(crm: Any) -> dict[str, str]:
    """Accounts, contacts and leads the rules and party resolution use; returns their CRM ids."""
    return {
        "contoso": crm.add_account("Contoso", "C-100", "info@contoso.com"),
        "fabrikam": crm.add_account("Fabrikam", "F-200"),
        "dana": crm.add_contact("Dana Contoso", "dana@contoso.com"),
        # the same address on a contact, an account and a lead: contact wins, then account, then lead
        "shared": crm.add_contact("Shared Person", "shared@partner.com"),
        "partner": crm.add_record(
            "account",
            name="Partner Inc",
            emailaddress1="shared@partner.com",
            emailaddress2="office@partner.com",
        ),
        "newbie": crm.add_record(
            "lead",
            fullname="Partner Lead",
            lastname="Lead",
            emailaddress1="shared@partner.com",
            emailaddress2="office@partner.com",
            emailaddress3="newbie@partner.com",
        ),
    }


def mail(subject: str, **spec: Any) -> MailSpec:
    spec.setdefault("sender", "dana@contoso.com")
    spec.setdefault("to", [ALICE])
    spec.setdefault("message_id", f"<{subject.replace(' ', '-')}@example.com>")
    spec.setdefault("body", f"body of {subject}")
    return MailSpec(subject=subject, **spec)


@dataclass
class CrmWorld:
    """The harness (simulator, database, watcher), the simulated Dataverse and the seeded record ids."""

    h: Harness
    dv: DataverseContext
    ids: dict[str, str]
    config: Any
    sinks: list[DataverseActivitySink] = field(default_factory=list)

    @property
    def crm(self) -> Any:
        return self.dv.crm

    def rules(self, on_leave: str = "keep", duplicates: str = "first_wins", backfill: str = "true") -> str:
        return RULES.format(on_leave=on_leave, duplicates=duplicates, backfill=backfill, **self.ids)

    def new_sink(self, **dataverse: Any) -> DataverseActivitySink:
        config = make_dataverse_config(self.dv, **dataverse) if dataverse else self.config
        sink = DataverseActivitySink.create(config, self.h.engine)
        self.sinks.append(sink)
        return sink

    def start(
        self,
        rules: str | None = None,
        *,
        sink: DataverseActivitySink | None = None,
        delivery: DeliveryOptions = FAST,
        **overrides: Any,
    ) -> DataverseActivitySink:
        """Write ``rules`` (default: :meth:`rules`) and start the watcher delivering into the CRM."""
        self.h.write_rules(rules if rules is not None else self.rules())
        sink = sink or self.new_sink()
        self.h.start_watcher(sink=sink, delivery=delivery, **overrides)
        return sink

    def file(self, subject: str, folder: str = CONTOSO, mailbox: str = ALICE, **spec: Any) -> str:
        """Deliver a mail to the Inbox and move it into ``folder``, as a user would; its new item id."""
        item = self.h.sim.deliver(mailbox, mail(subject, **spec), folder="Inbox")
        return self.h.sim.mailbox(mailbox).move_item(item, folder)

    def emails(self, subject: str) -> list[dict[str, Any]]:
        return [e for e in self.crm.emails() if e["subject"] == subject]

    def email(self, subject: str) -> dict[str, Any] | None:
        found = self.emails(subject)
        assert len(found) <= 1, f"{len(found)} CRM emails for {subject!r}"
        return found[0] if found else None

    def in_crm(self, subject: str, timeout: float = 15.0, **expected: Any) -> dict[str, Any]:
        """Wait until the CRM holds ``subject`` with the ``expected`` values (``regarding`` etc.)."""

        def check() -> dict[str, Any] | None:
            email = self.email(subject)
            return email if email and all(email.get(k) == v for k, v in expected.items()) else None

        return self.h.wait_for(check, timeout, f"{subject!r} in the CRM with {expected}")

    def outbox(self) -> list[Any]:
        with self.h.engine.connect() as conn:
            return list(conn.execute(select(outbox).order_by(outbox.c.id)))

    def drained(self, timeout: float = 30.0) -> None:
        """Wait until the watcher is idle and nothing waits in the outbox; nothing may be dead-lettered."""
        self.h.settle(timeout)
        self.h.wait_for(
            lambda: all(row.status != "pending" for row in self.outbox()), timeout, "an empty outbox"
        )
        dead = [(row.id, row.op, row.last_error) for row in self.outbox() if row.status == "dead"]
        assert not dead, f"dead letters: {dead}"

    def sentinel(self, subject: str = "sentinel") -> dict[str, Any]:
        """File a mail after the case under test and wait for it in the CRM: everything before it went
        through (the outbox is in order per key, and the sentinel is filed last)."""
        self.file(subject, FABRIKAM)
        email = self.in_crm(subject, regarding=("account", self.ids["fabrikam"]))
        self.drained()
        return email


def sync_records(config: Any, engine: Any) -> None:
    """``foldertrack records sync``: the record directory from the CRM (names, numbers, addresses → ids)."""
    client = connect(config)
    try:
        RecordsSyncer(client, engine).sync()
    finally:
        client.close()


@pytest.fixture
def world(dataverse_factory: Any, tmp_path: Any) -> Iterator[CrmWorld]:
    dv = dataverse_factory(heartbeat=0.5)
    ids = seed_crm(dv.crm)
    config = make_dataverse_config(dv)
    with Harness(tmp_path, simulator=dv.sim, **options_for_tests()) as h:
        sync_records(config, h.engine)
        for address in (ALICE, BOB):
            box = h.add_mailbox(address)
            for path in FOLDERS:
                box.create_folder(path)
        w = CrmWorld(h, dv, ids, config)
        try:
            yield w
        finally:
            h.stop_watcher()  # stops delivery, which closes its sink
            for sink in w.sinks:
                sink.close()
