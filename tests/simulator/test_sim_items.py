"""Items through unmodified exchangelib: create (MIME), get, find, update, move (new id), copy, delete."""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import Message
from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound
from exchangelib.properties import ItemId

from foldertrack.simulator import MailSpec, build_mime, parse_mime
from foldertrack.testing.fixtures_simulator import exchangelib_account


@pytest.fixture
def alice(simulator):
    mb = simulator.add_mailbox("alice@example.com", password="pw")
    return mb, exchangelib_account(simulator, "alice@example.com")


def _spec(**kw):
    base = dict(
        subject="Angebot für Müller - Grüße",
        sender="Jürgen Groß <juergen@contoso.example>",
        to=["Alice <alice@example.com>"],
        cc=["carol@example.com"],
        body="Hallo Alice,\nanbei das Angebot. ✓",
        html_body="<p>Hallo <b>Alice</b> &amp; Team ✓</p>",
        message_id="<offer-1@contoso.example>",
        attachments=[
            ("Angebot Ü.pdf", "application/pdf", b"%PDF-1.4 fake"),
            ("notes.txt", "text/plain", b"hi"),
        ],
        sent_at=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
    )
    base.update(kw)
    return MailSpec(**base)


def test_delivered_mail_properties(alice, simulator):
    _mb, account = alice
    item_id = simulator.deliver(
        "alice@example.com", _spec(in_reply_to="<x@y>", references=["<r@y>", "<x@y>"])
    )
    item = account.inbox.get(id=item_id)
    assert item.subject == "Angebot für Müller - Grüße"
    assert item.message_id == "<offer-1@contoso.example>"
    assert item.in_reply_to == "<x@y>"
    assert item.references == "<r@y> <x@y>"
    assert item.sender.email_address == "juergen@contoso.example"
    assert item.sender.name == "Jürgen Groß"
    assert [r.email_address for r in item.to_recipients] == ["alice@example.com"]
    assert [r.email_address for r in item.cc_recipients] == ["carol@example.com"]
    assert item.datetime_sent == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert item.datetime_received is not None
    assert item.has_attachments is True
    assert item.size > 100
    assert "<b>Alice</b>" in item.body
    assert item.text_body.startswith("Hallo Alice")
    assert item.conversation_id is not None
    names = sorted(a.name for a in item.attachments)
    assert names == ["Angebot Ü.pdf", "notes.txt"]
    pdf = next(a for a in item.attachments if a.name.endswith(".pdf"))
    assert pdf.content_type == "application/pdf" and pdf.size == len(b"%PDF-1.4 fake")
    assert pdf.content == b"%PDF-1.4 fake"  # GetAttachment
    assert item.is_read is False


def test_mime_content_round_trip(alice, simulator):
    _, account = alice
    mime = build_mime(_spec())
    item_id = simulator.deliver("alice@example.com", mime)
    (item,) = account.fetch([ItemId(id=item_id)], only_fields=["mime_content", "subject"])
    assert item.mime_content == mime
    assert parse_mime(item.mime_content).subject == "Angebot für Müller - Grüße"


def test_create_item_with_mime_saveonly(alice):
    mb, account = alice
    folder_id = mb.create_folder("Inbox/Customers")
    target = account.inbox / "Customers"
    msg = Message(account=account, folder=target, mime_content=build_mime(_spec(message_id="<created@x>")))
    msg.save()
    assert [s.message_id for s in mb.items(folder_id)] == ["<created@x>"]
    fetched = target.get(id=msg.id)
    assert fetched.subject == "Angebot für Müller - Grüße"
    assert fetched.is_draft is True  # SaveOnly without PR_MESSAGE_FLAGS: Exchange marks it unsent
    plain = Message(account=account, folder=account.inbox, subject="plain", body="text", is_read=True)
    plain.save()
    assert account.inbox.get(id=plain.id).is_read is True


def test_update_categories_and_read_flag_changes_changekey(alice, simulator):
    _, account = alice
    item = account.inbox.get(id=simulator.deliver("alice@example.com", _spec()))
    old_key = item.changekey
    item.categories = ["CRM", "Kunde ä"]
    item.is_read = True
    item.save(update_fields=["categories", "is_read"])
    assert item.changekey != old_key
    fresh = account.inbox.get(id=item.id)
    assert fresh.categories == ["CRM", "Kunde ä"] and fresh.is_read is True
    assert simulator.mailbox("alice@example.com").items("Inbox")[0].categories == ("CRM", "Kunde ä")


def test_move_gives_new_id_and_old_id_stops_resolving(alice, simulator):
    mb, account = alice
    mb.create_folder("Inbox/Customers/Contoso")
    target = account.inbox / "Customers" / "Contoso"
    item_id = simulator.deliver("alice@example.com", _spec())
    item = account.inbox.get(id=item_id)
    item.move(target)
    assert item.id != item_id
    assert [s.id for s in mb.items("Inbox/Customers/Contoso")] == [item.id]
    result = list(account.fetch([ItemId(id=item_id)]))
    assert isinstance(result[0], ErrorItemNotFound)


def test_copy_and_delete(alice, simulator):
    mb, account = alice
    item_id = simulator.deliver("alice@example.com", _spec())
    item = account.inbox.get(id=item_id)
    copy = item.copy(account.junk)
    copy_id = copy.id if hasattr(copy, "id") else copy[0]
    assert copy_id != item_id
    assert len(mb.items("Junk Email")) == 1 and len(mb.items("Inbox")) == 1
    item.move_to_trash()
    assert mb.items("Inbox") == [] and len(mb.items("Deleted Items")) == 1
    account.junk.all().delete()
    assert mb.items("Junk Email") == []


def test_find_item_with_restriction_and_paging(alice, simulator):
    _, account = alice
    for n in range(7):
        simulator.deliver("alice@example.com", _spec(message_id=f"<m{n}@x>", subject=f"mail {n}"))
    found = list(account.inbox.filter(message_id="<m3@x>"))
    assert [m.subject for m in found] == ["mail 3"]
    assert account.inbox.all().count() == 7
    page = list(account.inbox.all().order_by("subject").only("subject")[2:5])
    assert [m.subject for m in page] == ["mail 2", "mail 3", "mail 4"]
    assert {m.subject for m in account.inbox.filter(subject__icontains="MAIL 6")} == {"mail 6"}


def test_item_errors(alice):
    _, account = alice
    result = list(account.fetch([ItemId(id="garbage!!")]))
    assert isinstance(result[0], ErrorInvalidIdMalformed)


def test_mail_without_message_id_and_broken_headers(simulator):
    mb = simulator.add_mailbox("raw@example.com")
    raw = (
        b"From: =?utf-8?q?broken?=\r\nSubject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n\r\n"
        b"body \x01 with control char\r\n"
    )
    item_id = simulator.deliver("raw@example.com", raw)
    account = exchangelib_account(simulator, "raw@example.com")
    item = account.inbox.get(id=item_id)
    assert item.subject == "Grüße"
    assert item.message_id is None
    assert mb.items()[0].message_id is None
