"""The schema check itself, and MIME building/parsing (stdlib email)."""

from __future__ import annotations

import datetime as dt

from lxml import etree

from foldertrack.simulator import MailSpec, build_mime, parse_mime
from foldertrack.testing.fixtures_simulator import SchemaValidator, exchangelib_account


def test_every_response_is_checked_and_bad_ones_are_caught(ews_schema, simulator_factory):
    sim = simulator_factory()
    checker = SchemaValidator(ews_schema)
    sim.add_observer(checker)
    sim.add_mailbox("alice@example.com")
    account = exchangelib_account(sim, "alice@example.com")
    account.inbox.all().count()
    assert checker.checked >= 3 and checker.failures == []
    m = "http://schemas.microsoft.com/exchange/services/2006/messages"
    bogus = etree.fromstring(f'<m:GetFolderResponse xmlns:m="{m}"><m:Nope/></m:GetFolderResponse>')
    checker(bogus)
    assert len(checker.failures) == 1 and "GetFolderResponse" in checker.failures[0]


def test_build_and_parse_round_trip_non_ascii():
    spec = MailSpec(
        subject="Größe ✓ 日本",
        sender="Zoë Ünal <zoe@example.com>",
        to=["a@example.com", "B <b@example.com>"],
        cc=["c@example.com"],
        bcc=["d@example.com"],
        body="Grüße\n",
        html_body="<p>Grüße</p>",
        message_id="abc@example.com",
        in_reply_to="<parent@example.com>",
        references=["<root@example.com>", "<parent@example.com>"],
        attachments=[("Übersicht 2024.xlsx", "application/vnd.ms-excel", b"\x00\x01binary")],
        sent_at=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    mime = build_mime(spec)
    assert mime.isascii()  # RFC 5322 on the wire: encoded words and transfer encodings
    mail = parse_mime(mime)
    assert mail.subject == "Größe ✓ 日本"
    assert mail.sender.name == "Zoë Ünal" and mail.sender.email == "zoe@example.com"
    assert [a.email for a in mail.to] == ["a@example.com", "b@example.com"]
    assert [a.email for a in mail.bcc] == ["d@example.com"]
    assert mail.message_id == "<abc@example.com>"
    assert mail.references == "<root@example.com> <parent@example.com>"
    assert mail.text_body.strip() == "Grüße" and mail.html_body.strip() == "<p>Grüße</p>"
    (att,) = mail.attachments
    assert (att.name, att.content_type, att.content) == (
        "Übersicht 2024.xlsx",
        "application/vnd.ms-excel",
        b"\x00\x01binary",
    )
    assert mail.sent_at == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_no_message_id_when_asked():
    assert parse_mime(build_mime(MailSpec(message_id=""))).message_id is None
