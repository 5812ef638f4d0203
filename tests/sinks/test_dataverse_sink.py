"""The Dataverse sink against the simulated Dataverse, through MSAL and requests over verified TLS."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from foldertrack.model import Activity, Attachment, Party, RecordRef
from foldertrack.sinks.dataverse import DataverseActivitySink, activity_id
from foldertrack.testing.fixtures_dataverse_sink import make_dataverse_config

KEY = "<quote-42@contoso.example>"


def mail(regarding: RecordRef | None = None, **changes) -> Activity:
    activity = Activity(
        key=KEY,
        mailbox="sales@fabrikam.example",
        folder_id="AAMk-folder",
        folder_path="Inbox/Customers/Contoso",
        message_id=KEY,
        subject="Quote 42",
        direction="incoming",
        regarding=regarding,
        text_body="Please find the quote attached.",
        html_body="<p>Please find the quote attached.</p>",
        sender="alice@contoso.example",
        sent_at=datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
        received_at=datetime(2026, 11, 29, 9, 1, tzinfo=UTC),
        parties=(
            Party("from", "alice@contoso.example", "Alice"),
            Party("to", "sales@fabrikam.example", "Sales"),
            Party("cc", "bob@elsewhere.example", "Bob"),
        ),
    )
    return replace(activity, **changes)


@pytest.fixture
def contoso(dataverse) -> RecordRef:
    return RecordRef(
        "account", dataverse.crm.add_account("Contoso", "C-1", "info@contoso.example"), "Contoso"
    )


def test_upsert_creates_a_received_email_regarding_the_record(dataverse, dataverse_sink, contoso):
    assert dataverse_sink.upsert(mail(contoso)) == "created"

    email = dataverse.crm.email(activity_id(KEY))
    assert email["subject"] == "Quote 42"
    assert email["messageid"] == KEY
    assert email["description"] == "<p>Please find the quote attached.</p>"
    assert email["directioncode"] is False
    assert (email["statecode"], email["statuscode"]) == (1, 4)  # Completed / Received
    assert email["regarding"] == ("account", contoso.id)
    assert sorted(email["parties"], key=str) == sorted(
        [(1, "alice@contoso.example"), (2, "sales@fabrikam.example"), (3, "bob@elsewhere.example")], key=str
    )


def test_outgoing_mail_is_a_sent_email(dataverse, dataverse_sink):
    dataverse_sink.upsert(mail(direction="outgoing"))

    email = dataverse.crm.email(activity_id(KEY))
    assert email["directioncode"] is True
    assert (email["statecode"], email["statuscode"]) == (1, 3)  # Completed / Sent


def test_repeating_an_upsert_changes_nothing(dataverse, dataverse_sink, contoso):
    dataverse_sink.upsert(mail(contoso))
    before = dataverse.crm.email(activity_id(KEY))["row"]

    assert dataverse_sink.upsert(mail(contoso)) == "unchanged"

    assert len(dataverse.crm.emails()) == 1
    assert dataverse.crm.email(activity_id(KEY))["row"] == before


def test_an_existing_row_412_is_updated_to_the_new_content(dataverse, dataverse_sink, contoso):
    dataverse_sink.upsert(mail(contoso))

    assert dataverse_sink.upsert(mail(contoso, subject="Quote 42 (revised)")) == "updated"

    emails = dataverse.crm.emails()
    assert [e["subject"] for e in emails] == ["Quote 42 (revised)"]


def test_relink_moves_the_regarding_to_the_new_record(dataverse, dataverse_sink, contoso):
    lead = RecordRef("lead", dataverse.crm.add_lead("Dana Lee", "dana@lee.example"))
    dataverse_sink.upsert(mail(contoso))

    assert dataverse_sink.upsert(mail(lead)) == "updated"

    assert dataverse.crm.email(activity_id(KEY))["regarding"] == ("lead", lead.id)


def test_relink_to_a_record_deleted_in_the_crm_is_a_permanent_rejection(dataverse, dataverse_sink, contoso):
    """A 404 for the bound record is a real rejection (dead letter), not "the email vanished, retry"."""
    from foldertrack.errors import PermanentSinkError

    gone = RecordRef("account", dataverse.crm.add_account("Gone Ltd"))
    dataverse_sink.upsert(mail(contoso))
    dataverse.crm.delete_record("account", gone.id)

    with pytest.raises(PermanentSinkError) as caught:
        dataverse_sink.upsert(mail(gone))

    assert caught.value.code and caught.value.code.startswith("0x")
    assert dataverse.crm.email(activity_id(KEY))["regarding"] == ("account", contoso.id)


def test_an_email_deleted_in_the_crm_while_being_updated_is_retried(dataverse, dataverse_sink, contoso):
    """The email itself is gone between our read and our PATCH: transient (the retry creates it again)."""
    from foldertrack.errors import TransientSinkError

    other = RecordRef("account", dataverse.crm.add_account("Other Ltd"))
    dataverse_sink.upsert(mail(contoso))
    original = dataverse_sink.client.get_json

    def read_then_delete(path, **kwargs):  # the CRM deletes the row right after the sink read it
        answer = original(path, **kwargs)
        if "$select=activityid" not in path:
            dataverse.crm.delete_record("email", activity_id(KEY))
        return answer

    dataverse_sink.client.get_json = read_then_delete
    with pytest.raises(TransientSinkError):
        dataverse_sink.upsert(mail(other))
    dataverse_sink.client.get_json = original
    assert dataverse_sink.upsert(mail(other)) == "created"
    assert dataverse.crm.email(activity_id(KEY))["regarding"] == ("account", other.id)


def test_untrack_clears_the_regarding_and_keeps_the_email(dataverse, dataverse_sink, contoso):
    dataverse_sink.upsert(mail(contoso))

    assert dataverse_sink.untrack(KEY) is True

    email = dataverse.crm.email(activity_id(KEY))
    assert email is not None and email["regarding"] is None
    assert dataverse_sink.untrack("<never-tracked@example>") is False


def test_delete_removes_the_email_and_is_idempotent(dataverse, dataverse_sink, contoso):
    dataverse_sink.upsert(mail(contoso))

    assert dataverse_sink.delete(KEY) is True
    assert dataverse.crm.email(activity_id(KEY)) is None
    assert dataverse_sink.delete(KEY) is False


def test_resolved_parties_point_at_records_unresolved_keep_the_address(dataverse, dataverse_sink, contoso):
    alice = dataverse.crm.add_contact("Alice Smith", "alice@contoso.example", account=contoso.id)
    parties = (
        Party("from", "alice@contoso.example", "Alice", RecordRef("contact", alice)),
        Party("to", "info@contoso.example", None, contoso),
        Party("bcc", "nobody@unknown.example"),
    )
    dataverse_sink.upsert(mail(contoso, parties=parties))

    email = dataverse.crm.email(activity_id(KEY))
    assert sorted(email["parties"], key=str) == sorted(
        [(1, ("contact", alice)), (2, ("account", contoso.id)), (4, "nobody@unknown.example")], key=str
    )
    row = email["row"]
    assert row["torecipients"] == "info@contoso.example"
    assert row["sender"] == "alice@contoso.example"


def test_changed_parties_replace_the_old_ones(dataverse, dataverse_sink, contoso):
    dataverse_sink.upsert(mail(contoso))

    outcome = dataverse_sink.upsert(mail(contoso, parties=(Party("from", "carol@contoso.example"),)))

    assert outcome == "updated"
    assert dataverse.crm.email(activity_id(KEY))["parties"] == [(1, "carol@contoso.example")]


def test_stored_attachments_are_copied_larger_ones_named_in_a_footer(dataverse, dataverse_sink, contoso):
    attachments = (
        Attachment("quote.pdf", "application/pdf", 11, b"%PDF-1.7 42"),
        Attachment("video.mp4", "video/mp4", 80 * 1024 * 1024),  # over the limit: no content
    )
    dataverse_sink.upsert(mail(contoso, attachments=attachments, html_body=None))

    email = dataverse.crm.email(activity_id(KEY))
    assert email["attachments"] == [("quote.pdf", "application/pdf", 11)]
    assert email["description"] == (
        "Please find the quote attached.\n\n"
        "Attachments not copied to the CRM (over the size limit): video.mp4 (80MiB)"
    )
    stored = dataverse.crm.records("activitymimeattachment")
    assert dataverse.crm.attachment_content(stored[0]["activitymimeattachmentid"]) == b"%PDF-1.7 42"
    assert dataverse_sink.upsert(mail(contoso, attachments=attachments, html_body=None)) == "unchanged"


def test_attachments_over_the_limit_can_be_skipped_silently(dataverse, contoso):
    config = make_dataverse_config(dataverse, attachments_over_limit="skip")
    sink = DataverseActivitySink.create(config, None)
    try:
        sink.upsert(mail(contoso, attachments=(Attachment("huge.iso", None, 10**9),)))
    finally:
        sink.close()

    email = dataverse.crm.email(activity_id(KEY))
    assert email["attachments"] == []
    assert email["description"] == "<p>Please find the quote attached.</p>"


def test_an_attachment_added_later_is_uploaded_on_the_next_upsert(dataverse, dataverse_sink, contoso):
    dataverse_sink.upsert(mail(contoso))

    late = (Attachment("notes.txt", "text/plain", 5, b"hello"),)
    assert dataverse_sink.upsert(mail(contoso, attachments=late)) == "updated"

    assert dataverse.crm.email(activity_id(KEY))["attachments"] == [("notes.txt", "text/plain", 5)]


def test_over_long_values_are_cut_with_a_log_line_never_rejected(dataverse, dataverse_sink, caplog):
    subject = "Ü" * 150 + "😀" * 40  # 150 + 80 UTF-16 code units: over email.subject's 200
    with caplog.at_level(logging.WARNING, logger="foldertrack.sinks.dataverse"):
        assert dataverse_sink.upsert(mail(subject=subject)) == "created"

    stored = dataverse.crm.email(activity_id(KEY))["subject"]
    assert stored == "Ü" * 150 + "😀" * 25  # 200 code units, no half surrogate pair
    assert "email.subject" in caplog.text and "cut to 200" in caplog.text


def test_unknown_record_is_a_permanent_error_with_dataverse_s_message(dataverse, dataverse_sink):
    from foldertrack.errors import PermanentSinkError

    missing = RecordRef("account", "00000000-0000-0000-0000-00000000beef")
    with pytest.raises(PermanentSinkError) as caught:
        dataverse_sink.upsert(mail(missing))

    assert caught.value.code and caught.value.code.startswith("0x")
    assert "Dataverse PATCH emails(" in str(caught.value)
    assert dataverse.crm.emails() == []
