"""A whole foldertrack on the simulator with an external sink: the recording test CRM, fed by delivery."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from foldertrack.delivery.service import DeliveryOptions
from foldertrack.simulator import MailSpec
from foldertrack.state.schema import outbox
from foldertrack.testing.harness import Harness, options_for_tests
from foldertrack.testing.recording_sink import RecordingSink

ALICE = "alice@example.com"
CONTOSO = "Inbox/Customers/Contoso"
FABRIKAM = "Inbox/Customers/Fabrikam"
ELSEWHERE = "Inbox/Elsewhere"
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
contact,con-dana,Dana Contoso,,dana@contoso.com
"""
RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      {CONTOSO}: account:acc-contoso
      {FABRIKAM}: account:acc-fabrikam
"""
#: quick retries for tests: the real defaults wait up to minutes
FAST = DeliveryOptions(
    workers=3, initial_backoff=0.05, max_backoff=0.5, scan_interval=0.2, unhealthy_after=1.0
)


@dataclass
class World:
    """The harness (simulator, database, watcher) plus the test CRM."""

    h: Harness
    crm: RecordingSink

    def start(self, rules: str = RULES, delivery: DeliveryOptions = FAST, **overrides: Any) -> None:
        self.h.write_rules(rules)
        self.h.start_watcher(sink=self.crm, delivery=delivery, **overrides)

    def file(self, subject: str, folder: str = CONTOSO, **spec: Any) -> str:
        """Deliver a mail to Alice's inbox and move it into ``folder``; returns its item id there."""
        mail = MailSpec(
            subject=subject, sender="dana@contoso.com", to=[ALICE], body=f"body of {subject}", **spec
        )
        item = self.h.sim.deliver(ALICE, mail)
        return self.h.sim.mailbox(ALICE).move_item(item, folder)

    def move(self, item_id: str, folder: str) -> str:
        return self.h.sim.mailbox(ALICE).move_item(item_id, folder)

    def in_crm(self, subject: str, timeout: float = 15.0, **expected: Any) -> dict[str, Any]:
        def check():
            row = self.crm.crm().get(subject)
            return row if row and all(row.get(k) == v for k, v in expected.items()) else None

        return self.h.wait_for(check, timeout, f"{subject!r} in the CRM with {expected}")

    def outbox(self) -> list[Any]:
        with self.h.engine.connect() as conn:
            return list(conn.execute(select(outbox).order_by(outbox.c.id)))

    def drained(self) -> bool:
        return all(row.status != "pending" for row in self.outbox())


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with Harness(tmp_path, **options_for_tests()) as h:
        h.import_records(RECORDS)
        mailbox = h.add_mailbox(ALICE)
        for path in (CONTOSO, FABRIKAM, ELSEWHERE):
            mailbox.create_folder(path)
        crm = RecordingSink(tmp_path / "crm.db")
        try:
            yield World(h, crm)
        finally:
            h.stop_watcher()
            crm.close()
