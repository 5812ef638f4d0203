"""DESIGN "Tracking semantics", the item rows, end to end (simulator + exchangelib + watcher + SQLite):
parties resolved to records, outgoing mail, attachments within and over the limit, mail without a
Message-ID, items that are not mails, and mails bad enough to break a parser."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from foldertrack.simulator import MailSpec
from foldertrack.simulator.soap import T
from foldertrack.state.schema import activity_attachments, dead_letters, ledger
from foldertrack.testing.fixtures_simulator import SchemaValidator, _load_schema, exchangelib_account
from foldertrack.testing.harness import USER_PASSWORD
from tests.watch.conftest import ALICE, both_sources

RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""
FOLDERS = ("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Inbox/Elsewhere")


def _mail(subject, **kw):
    kw.setdefault("sender", "dana@contoso.com")
    kw.setdefault("to", [ALICE])
    kw.setdefault("message_id", f"<{subject.replace(' ', '-')}@example.com>")
    kw.setdefault("body", f"body of {subject}")
    return MailSpec(subject=subject, **kw)


def _start(h, **options):
    mb = h.add_mailbox(ALICE)
    for path in FOLDERS:
        mb.create_folder(path)
    h.write_rules(RULES)
    h.start_watcher(**options)
    return mb


def _file(h, mail, folder="Inbox/Customers/Contoso"):
    item = h.sim.deliver(ALICE, mail, folder="Inbox")
    return h.sim.mailbox(ALICE).move_item(item, folder)


def _sentinel(h, subject="sentinel"):
    """File a mail after the case under test and wait for it: the watcher got past that case."""
    _file(h, _mail(subject), "Inbox/Customers/Fabrikam")
    h.wait_tracked(subject, regarding_id="acc-fabrikam")
    h.settle()


def _rows(h, table, **where):
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with h.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


PARTY_RECORDS = """type,id,name,number,emails
contact,con-shared,Shared Person,,shared@partner.com
account,acc-partner,Partner Inc,P-1,shared@partner.com;office@partner.com
lead,lead-partner,Partner Lead,,shared@partner.com;office@partner.com;newbie@partner.com
contact,con-twin-1,Twin One,,twins@partner.com
contact,con-twin-2,Twin Two,,twins@partner.com
"""


@both_sources
def test_parties_resolve_contact_then_account_then_lead(harness):
    harness.import_records(PARTY_RECORDS)
    _start(harness)
    _file(
        harness,
        _mail(
            "parties",
            sender="Shared Person <Shared@Partner.com>",
            to=[ALICE, "office@partner.com"],
            cc=["newbie@partner.com", "stranger@nowhere.example", "twins@partner.com"],
        ),
    )
    activity = harness.wait_tracked("parties", regarding_id="acc-contoso")
    parties = {(p["role"], p["address"]): p for p in harness.parties(activity["key"])}
    resolved = {key: (p["record_type"], p["record_id"]) for key, p in parties.items()}
    assert resolved == {
        ("from", "shared@partner.com"): ("contact", "con-shared"),  # contact wins over account and lead
        ("to", ALICE): (None, None),
        ("to", "office@partner.com"): ("account", "acc-partner"),  # account wins over lead
        ("cc", "newbie@partner.com"): ("lead", "lead-partner"),
        ("cc", "stranger@nowhere.example"): (None, None),  # unknown: kept as a plain address
        ("cc", "twins@partner.com"): (None, None),  # two contacts: ambiguous, kept as a plain address
    }
    assert parties[("from", "shared@partner.com")]["name"] == "Shared Person"
    assert [p["role"] for p in harness.parties(activity["key"])] == ["from", "to", "to", "cc", "cc", "cc"]
    assert activity["sender"] == "shared@partner.com" and activity["direction"] == "incoming"


@both_sources
def test_mail_sent_by_the_mailbox_owner_is_outgoing(harness):
    from exchangelib import Message

    _start(harness)
    account = exchangelib_account(harness.sim, ALICE, USER_PASSWORD)
    try:
        # the user sends a mail (a copy lands in Sent Items), then files the sent copy in a tracked folder
        Message(
            account=account,
            subject="our offer",
            body="please find our offer",
            author=ALICE,
            to_recipients=["dana@contoso.com"],
        ).send_and_save()
        (sent,) = account.sent.filter(subject="our offer")
        sent.move(account.inbox / "Customers" / "Contoso")
        # and copies another sent mail (written in Outlook with its From set) into a tracked folder
        copied = harness.sim.deliver(
            ALICE,
            _mail("our reply", sender=f"Alice <{ALICE.upper()}>", to=["info@contoso.com"]),
            "Sent Items",
        )
        harness.sim.mailbox(ALICE).copy_item(copied, "Inbox/Customers/Fabrikam")
    finally:
        account.protocol.close()
    offer = harness.wait_tracked("our offer", regarding_id="acc-contoso")
    reply = harness.wait_tracked("our reply", regarding_id="acc-fabrikam")
    assert offer["direction"] == "outgoing" and offer["sender"] == ALICE
    assert reply["direction"] == "outgoing" and reply["sender"] == ALICE
    to = [(p["role"], p["address"], p["record_id"]) for p in harness.parties(reply["key"])]
    assert ("to", "info@contoso.com", "acc-contoso") in to


@both_sources
def test_sent_copy_without_explicit_from_is_outgoing(harness):
    from exchangelib import Message

    _start(harness)
    account = exchangelib_account(harness.sim, ALICE, USER_PASSWORD)
    try:
        Message(
            account=account, subject="plain send", body="hi", to_recipients=["dana@contoso.com"]
        ).send_and_save()
        (sent,) = account.sent.filter(subject="plain send")
        sent.move(account.inbox / "Customers" / "Contoso")
    finally:
        account.protocol.close()
    assert harness.wait_tracked("plain send")["direction"] == "outgoing"


@both_sources
def test_attachments_within_and_over_the_limit(harness):
    _start(harness, max_attachment_bytes=4096)
    small, exact, large = b"s" * 1000, b"e" * 4096, bytes(range(256)) * 40  # 10,240 bytes
    _file(
        harness,
        _mail(
            "with attachments",
            attachments=[
                ("notes.txt", "text/plain", small),
                ("exact.bin", "application/octet-stream", exact),
                ("big.pdf", "application/pdf", large),
            ],
        ),
    )
    activity = harness.wait_tracked("with attachments")
    rows = sorted(
        _rows(harness, activity_attachments, activity_key=activity["key"]), key=lambda r: r["position"]
    )
    assert [(r["name"], r["content_type"], r["size"], r["stored"]) for r in rows] == [
        ("notes.txt", "text/plain", 1000, True),
        ("exact.bin", "application/octet-stream", 4096, True),
        ("big.pdf", "application/pdf", 10240, False),  # metadata kept, content flagged as not stored
    ]
    assert rows[0]["content"] == small and rows[1]["content"] == exact
    assert rows[2]["content"] is None and rows[2]["content_sha256"] is None
    assert not any(r["is_inline"] for r in rows)


@both_sources
def test_mail_without_message_id_gets_a_hash_key_and_is_tracked_once(harness):
    mb = _start(harness)
    item = _file(harness, _mail("no message id", message_id=""))
    first = harness.wait_tracked("no message id", regarding_id="acc-contoso")
    assert first["key"].startswith("hash:") and first["message_id"] is None

    # out and back in, and a copy into another tracked folder: still one activity with the same key
    item = mb.move_item(item, "Inbox/Elsewhere")
    item = mb.move_item(item, "Inbox/Customers/Contoso")
    mb.copy_item(item, "Inbox/Customers/Fabrikam")
    harness.wait_tracked("no message id", regarding_id="acc-fabrikam")
    _sentinel(harness)
    (activity,) = [a for a in harness.activities() if a["subject"] == "no message id"]
    assert activity["key"] == first["key"]
    entries = _rows(harness, ledger, mail_key=first["key"])
    assert len(entries) == 2  # one per folder it was filed in
    # the same content without a Message-ID, sent at another time, is another mail
    _file(harness, _mail("no message id", message_id="", sent_at=None, body="other body"))
    harness.wait_for(lambda: len([a for a in harness.activities() if a["subject"] == "no message id"]) == 2)


def _create_item(h, folder, subject, item_class):
    """Put a non-mail item (contact, appointment…) in a folder, as Outlook would."""
    store = h.sim.store
    with store.lock:  # the class is set before any request can see the item
        mailbox = store.mailbox(ALICE)
        item = store.create_item(
            mailbox, store.folder_by_path(mailbox, folder), _mail(subject).to_mime(), delivered=False
        )
        item.item_class = item_class
        return item.id


@both_sources
def test_items_that_are_not_mails_are_skipped_and_logged(harness, caplog, source):
    caplog.set_level("INFO", logger="foldertrack")
    schema = _load_schema() if source == "ews" else None  # the EWS schema checks EWS responses only
    validator = SchemaValidator(schema) if schema is not None else None
    if validator is not None:  # responses that carry a non-mail item must be valid EWS too

        def check(response):
            if any(True for _ in response.iter(T("Contact"), T("CalendarItem"), T("Task"))):
                validator(response)

        harness.sim.add_observer(check)
    mb = harness.add_mailbox(ALICE)
    for path in FOLDERS:
        mb.create_folder(path)
    _create_item(harness, "Inbox/Customers/Contoso", "existing contact", "IPM.Contact")  # backfill pass
    harness.write_rules(RULES)
    harness.start_watcher()
    _file(harness, _mail("real mail before"))
    _create_item(harness, "Inbox/Customers/Contoso", "team meeting", "IPM.Appointment")
    _create_item(harness, "Inbox/Customers/Contoso", "call back", "IPM.Task")
    _file(harness, _mail("real mail after"))
    harness.wait_tracked("real mail before", regarding_id="acc-contoso")
    harness.wait_tracked("real mail after", regarding_id="acc-contoso")
    _sentinel(harness)

    subjects = {a["subject"] for a in harness.activities()}
    assert subjects == {"real mail before", "real mail after", "sentinel"}
    skipped = [r.getMessage() for r in caplog.records if "not a mail" in r.getMessage()]
    for item_class in ("IPM.Contact", "IPM.Appointment", "IPM.Task"):
        assert any(item_class in message for message in skipped), skipped
    assert not _rows(harness, dead_letters)
    if validator is not None:
        assert validator.checked and not validator.failures, validator.failures[:3]


@both_sources
def test_huge_and_malformed_mails_never_stop_the_watcher(harness):
    _start(harness)
    huge_body = ("All work and no play makes Jack a dull boy. " * 100 + "\n") * 800  # ≈ 3.5 MB
    _file(harness, _mail("huge mail", body=huge_body))
    broken = (
        b"From: =?utf-8?q?broken=ZZ?= <\xff\xfe@bad>\r\n"
        b"To: , ,<>,alice@example.com\r\n"
        b"Subject: =?unknown-8bit?b?!!!?= broken \xe9 subject\r\n"
        b"Date: the day after tomorrow\r\n"
        b"Message-ID: <broken-headers@example.com>\r\n"
        b"This line is no header at all\r\n"
        b"Content-Type: multipart/mixed\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"%%% not base64, no boundary, \x01 control \x7f bytes \xc3\x28 invalid utf-8\r\n"
    )
    _file(harness, broken)
    _file(harness, b"")  # not even headers
    control = _mail("control \x01 chars", body="NUL \x00, VT \x0b and ESC \x1b are not XML")
    _file(harness, replace(control, message_id="<control-chars@example.com>"))
    huge = harness.wait_tracked("huge mail", timeout=30)
    assert len(huge["text_body"]) > 3_000_000
    _sentinel(harness)
    # a broken mail is still a mail its user filed: tracked as well as it can be read, nothing dead-lettered
    by_id = {a["message_id"]: a for a in harness.activities()}
    assert by_id["<broken-headers@example.com>"]["subject"] == "broken \ufffd subject"
    assert by_id[None]["key"].startswith("hash:")  # the empty one
    assert by_id["<control-chars@example.com>"]["text_body"].startswith("NUL ")
    assert len(by_id) == 5 and not _rows(harness, dead_letters)
