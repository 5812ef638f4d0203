"""Shared set-up of the hardening tests: one mailbox, two tracked folders, a running watcher."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from foldertrack.simulator import MailSpec
from foldertrack.testing.harness import Harness, options_for_tests

ALICE = "alice@example.com"
BOB = "bob@example.com"
CONTOSO = "Inbox/Customers/Contoso"
FABRIKAM = "Inbox/Customers/Fabrikam"
SENT = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
"""
RULES = f"""
mailboxes:
  - addresses: [{ALICE}, {BOB}]
    folders:
      {CONTOSO}: account:acc-contoso
      {FABRIKAM}: account:acc-fabrikam
"""


def mail(subject: str, **kw: Any) -> MailSpec:
    kw.setdefault("sender", "dana@contoso.com")
    kw.setdefault("to", [ALICE])
    kw.setdefault("message_id", f"<{hashlib.sha1(subject.encode()).hexdigest()[:16]}@example.com>")
    kw.setdefault("body", f"body of {subject}")
    kw.setdefault("sent_at", SENT)
    return MailSpec(subject=subject, **kw)


def file(h: Harness, spec: MailSpec, folder: str = CONTOSO, mailbox: str = ALICE) -> str:
    """Deliver to the Inbox, then move into ``folder`` like a user: returns the new item id."""
    item = h.sim.deliver(mailbox, spec, folder="Inbox")
    return h.sim.mailbox(mailbox).move_item(item, folder)


def rows(h: Harness, table, **where: Any) -> list[dict[str, Any]]:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with h.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def prepare(h: Harness, mailboxes: tuple[str, ...] = (ALICE,)) -> None:
    h.import_records(RECORDS)
    for address in mailboxes:
        box = h.add_mailbox(address)
        for path in (CONTOSO, FABRIKAM, "Inbox/Elsewhere"):
            box.create_folder(path)
    h.write_rules(RULES.replace(f"[{ALICE}, {BOB}]", f"[{', '.join(mailboxes)}]"))


@pytest.fixture
def harness(tmp_path):
    with Harness(tmp_path, **options_for_tests()) as h:
        prepare(h)
        yield h


@pytest.fixture
def watching(harness):
    harness.start_watcher()
    return harness
