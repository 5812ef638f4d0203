"""Where the simulator used to depart from Exchange (issue 11, items 1 to 7): each now answers like Exchange."""

from __future__ import annotations

import base64
import re

import pytest
import requests
from exchangelib import FileAttachment, Message
from exchangelib.properties import NewMailEvent

from foldertrack.simulator import MailSpec
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.soap import find, parse, post, response_code, soap_envelope

ALICE = "alice@example.com"
AUTH = (ALICE, "pw")


@pytest.fixture
def sim(simulator_factory):
    sim = simulator_factory(minute=0.05, heartbeat=0.2)
    sim.add_mailbox(ALICE)
    return sim


def get_item(item_id: str, shape: str = "<t:BaseShape>Default</t:BaseShape>") -> str:
    return f'<m:GetItem><m:ItemShape>{shape}</m:ItemShape><m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>'


# -- 1. streaming framing -------------------------------------------------------------------------------


def test_stream_chunks_are_bare_envelopes_like_exchange(sim):
    account = exchangelib_account(sim, ALICE)
    sub_id = account.inbox.subscribe_to_streaming()
    body = (
        f"<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{sub_id}</t:SubscriptionId>"
        "</m:SubscriptionIds><m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>"
    )
    with post(sim, soap_envelope(body), AUTH, stream=True) as response:
        sim.deliver(ALICE, MailSpec(subject="framed"))
        raw = b"".join(response.iter_content(None))
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert raw.startswith(b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/">')
    assert b"<?xml" not in raw
    documents = re.findall(rb"<Envelope .*?</Envelope>", raw, re.S)
    assert len(documents) >= 2 and b"NewMailEvent" in b"".join(documents)  # events, then Closed
    assert b"<ConnectionStatus>Closed" in documents[-1].replace(b"m:", b"")


def test_exchangelib_still_reads_the_stream(sim):
    account = exchangelib_account(sim, ALICE)
    sub_id = account.inbox.subscribe_to_streaming()
    sim.deliver(ALICE, MailSpec(subject="streamed"))
    events = [e for n in account.inbox.get_streaming_events(sub_id, connection_timeout=1) for e in n.events]
    assert any(isinstance(e, NewMailEvent) for e in events)


# -- 2. attachments -------------------------------------------------------------------------------------


def test_create_item_stores_inline_attachments_and_returns_their_ids(sim):
    content = base64.b64encode(b"PDF-bytes").decode()
    body = (
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="drafts"/></m:SavedItemFolderId><m:Items><t:Message>'
        '<t:Subject>with attachment</t:Subject><t:Body BodyType="Text">see attached</t:Body>'
        "<t:Attachments><t:FileAttachment><t:Name>offer.pdf</t:Name>"
        f"<t:ContentType>application/pdf</t:ContentType><t:Content>{content}</t:Content>"
        "</t:FileAttachment></t:Attachments></t:Message></m:Items></m:CreateItem>"
    )
    root = parse(post(sim, soap_envelope(body), AUTH))
    assert response_code(root) == "NoError"
    (att_id,) = find(root, "//t:Message/t:Attachments/t:FileAttachment/t:AttachmentId")
    (item_id,) = find(root, "//t:Message/t:ItemId/@Id")
    assert att_id.get("RootItemId") == item_id
    got = parse(post(sim, soap_envelope(
        f'<m:GetAttachment><m:AttachmentIds><t:AttachmentId Id="{att_id.get("Id")}"/></m:AttachmentIds>'
        "</m:GetAttachment>"
    ), AUTH))  # fmt: skip
    assert find(got, "//t:FileAttachment/t:Name/text()") == ["offer.pdf"]
    assert base64.b64decode(find(got, "//t:FileAttachment/t:Content/text()")[0]) == b"PDF-bytes"


def test_exchangelib_attach_and_detach(sim):
    account = exchangelib_account(sim, ALICE)
    message = Message(account=account, folder=account.drafts, subject="draft", body="x")
    message.save()
    first = FileAttachment(name="a.txt", content=b"first", content_type="text/plain")
    second = FileAttachment(name="b.txt", content=b"second", content_type="text/plain")
    message.attach([first, second])  # CreateAttachment
    assert first.attachment_id is not None and second.attachment_id is not None
    fetched = account.drafts.get(id=message.id)
    assert sorted((a.name, a.content) for a in fetched.attachments) == [
        ("a.txt", b"first"),
        ("b.txt", b"second"),
    ]
    message.detach(first)  # DeleteAttachment: the other one keeps its id
    fetched = account.drafts.get(id=message.id)
    assert [(a.name, a.attachment_id.id) for a in fetched.attachments] == [("b.txt", second.attachment_id.id)]


# -- 3. first sync lists the folder; incremental syncs report net changes ---------------------------------


def test_first_sync_lists_current_items_only_however_small_the_pages(sim):
    mb = sim.mailbox(ALICE)
    mb.create_folder("Archive")
    ids = [sim.deliver(ALICE, MailSpec(subject=f"m{n}")) for n in range(6)]
    for item_id in ids[:3]:
        mb.move_item(item_id, "Archive")  # left before the first sync
    account = exchangelib_account(sim, ALICE)
    changes = list(account.inbox.sync_items(only_fields=["subject"], max_changes_returned=1))
    assert sorted((kind, item.subject) for kind, item in changes) == [
        ("create", "m3"),
        ("create", "m4"),
        ("create", "m5"),
    ]
    # every Create names an item that exists (a client may fetch each page's creates)
    for _, item in changes:
        assert account.inbox.get(id=item.id).subject == item.subject


def test_incremental_sync_reports_net_change_never_split_across_pages(sim):
    account = exchangelib_account(sim, ALICE)
    mb = sim.mailbox(ALICE)
    list(account.inbox.sync_items(only_fields=["subject"]))
    state = account.inbox.item_sync_state
    keep = [sim.deliver(ALICE, MailSpec(subject=f"k{n}")) for n in range(2)]
    transient = sim.deliver(ALICE, MailSpec(subject="came and went"))
    sim.deliver(ALICE, MailSpec(subject="k2"))
    mb.delete_item(transient, hard=True)
    changes = list(
        account.inbox.sync_items(sync_state=state, only_fields=["subject"], max_changes_returned=1)
    )
    assert [kind for kind, _ in changes] == ["create"] * 3
    assert {item.subject for _, item in changes} == {"k0", "k1", "k2"}
    assert keep[0] in {item.id for _, item in changes}


def test_first_hierarchy_sync_lists_current_folders_only(sim):
    mb = sim.mailbox(ALICE)
    mb.create_folder("Inbox/Gone")
    mb.create_folder("Inbox/Stays")
    mb.delete_folder("Inbox/Gone", hard=True)
    account = exchangelib_account(sim, ALICE)
    changes = list(account.inbox.sync_hierarchy())
    assert [(kind, f.name) for kind, f in changes] == [("create", "Stays")]


# -- 4. FindItem shapes ------------------------------------------------------------------------------------


def test_find_item_returns_no_bodies_attachments_or_recipient_lists(sim):
    sim.deliver(ALICE, MailSpec(subject="rich", to=[ALICE], cc=["c@example.com"], attachments=[
        ("x.bin", "application/octet-stream", b"123")
    ]))  # fmt: skip
    body = (
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape>'
        '<t:AdditionalProperties><t:FieldURI FieldURI="item:Body"/>'
        '<t:FieldURI FieldURI="message:ToRecipients"/></t:AdditionalProperties></m:ItemShape>'
        '<m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>'
    )
    root = parse(post(sim, soap_envelope(body), AUTH))
    (message,) = find(root, "//t:Items/t:Message")
    names = {child.tag.rpartition("}")[2] for child in message}
    assert {"Subject", "DisplayTo", "DisplayCc", "HasAttachments"} <= names
    assert not names & {"Body", "Attachments", "ToRecipients", "CcRecipients", "MimeContent"}
    (item_id,) = find(message, "t:ItemId/@Id")
    full = parse(
        post(sim, soap_envelope(get_item(item_id, "<t:BaseShape>AllProperties</t:BaseShape>")), AUTH)
    )
    names = {child.tag.rpartition("}")[2] for child in find(full, "//m:Items/t:Message")[0]}
    assert {"Body", "Attachments", "ToRecipients", "CcRecipients"} <= names  # GetItem does


# -- 5. request validation ---------------------------------------------------------------------------------


def test_invalid_requests_fail_schema_validation_like_exchange(sim):
    response = post(sim, soap_envelope("<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
                                       "<m:ItemIds><t:ItemId/></m:ItemIds></m:GetItem>"), AUTH)  # fmt: skip
    root = parse(response)
    assert response.status_code == 500 and response_code(root) == "ErrorSchemaValidation"
    assert find(root, "//s:Fault/faultcode/text()") == ["a:ErrorSchemaValidation"]
    violation = find(root, "//t:MessageXml/t:Value[@Name='Violation']/text()")
    assert violation and "Id" in violation[0]
    assert find(root, "//t:MessageXml/t:Value[@Name='LineNumber']")
    markup = (
        '<m:CreateItem MessageDisposition="SaveOnly"><m:Items><t:Message><t:Subject>x</t:Subject>'
        '<t:Body BodyType="Text"><b>unescaped</b></t:Body></t:Message></m:Items></m:CreateItem>'
    )
    assert response_code(parse(post(sim, soap_envelope(markup), AUTH))) == "ErrorSchemaValidation"
    assert sim.mailbox(ALICE).items("Drafts") == []  # nothing stored


def test_unknown_request_server_version(sim):
    response = post(sim, soap_envelope(get_item("x"), version="Exchange2099"), AUTH)
    assert response.status_code == 500 and response_code(parse(response)) == "ErrorInvalidServerVersion"


def test_empty_id_is_invalid_id_empty(sim):
    root = parse(post(sim, soap_envelope(get_item("")), AUTH))
    assert find(root, "//m:GetItemResponseMessage/@ResponseClass") == ["Error"]
    assert response_code(root) == "ErrorInvalidIdEmpty"
    assert response_code(parse(post(sim, soap_envelope(get_item("bad!")), AUTH))) == "ErrorInvalidIdMalformed"


# -- 6. responses shaped to RequestServerVersion -------------------------------------------------------------


def test_responses_follow_the_requested_schema_version(sim):
    item_id = sim.deliver(ALICE, MailSpec(subject="v", attachments=[("a.txt", "text/plain", b"a")]))
    shape = (
        "<t:BaseShape>Default</t:BaseShape><t:AdditionalProperties>"
        '<t:FieldURI FieldURI="item:TextBody"/><t:FieldURI FieldURI="item:Attachments"/>'
        "</t:AdditionalProperties>"
    )

    def names(version: str) -> tuple[set[str], set[str]]:
        root = parse(post(sim, soap_envelope(get_item(item_id, shape), version=version), AUTH))
        (message,) = find(root, "//m:Items/t:Message")
        (attachment,) = find(message, "t:Attachments/t:FileAttachment")
        return {c.tag.rpartition("}")[2] for c in message}, {c.tag.rpartition("}")[2] for c in attachment}

    (old, old_att), (v2010, att2010), (new, new_att) = (
        names("Exchange2007_SP1"),
        names("Exchange2010_SP2"),
        names("Exchange2016"),
    )
    assert not old & {"ConversationId", "IsAssociated", "TextBody"} and not old_att & {"Size", "IsInline"}
    assert {"ConversationId", "IsAssociated"} <= v2010 and "TextBody" not in v2010
    assert {"Size", "IsInline"} <= att2010
    assert {"ConversationId", "TextBody"} <= new and "Size" in new_att


# -- 7. the smaller ones -------------------------------------------------------------------------------------


def test_date_time_precision_milliseconds(sim):
    item_id = sim.deliver(ALICE, MailSpec(subject="ms"))
    shape = '<t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:DateTimeReceived"/></t:AdditionalProperties>'
    plain = parse(post(sim, soap_envelope(get_item(item_id, shape)), AUTH))
    precise = parse(post(sim, soap_envelope(
        get_item(item_id, shape), header="<t:DateTimePrecision>Milliseconds</t:DateTimePrecision>"
    ), AUTH))  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", find(plain, "//t:DateTimeReceived/text()")[0])
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", find(precise, "//t:DateTimeReceived/text()")[0]
    )


def test_request_id_headers_and_server_header(sim):
    data = soap_envelope('<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>'
                         '<m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>')  # fmt: skip
    plain = post(sim, data, AUTH, headers={"client-request-id": "abc-123"})
    asked = post(
        sim, data, AUTH, headers={"client-request-id": "abc-123", "return-client-request-id": "true"}
    )
    assert plain.headers["Server"] == "Microsoft-IIS/10.0"
    assert re.fullmatch(r"[0-9a-f-]{36}", plain.headers["request-id"])
    assert plain.headers["request-id"] != asked.headers["request-id"]
    assert "client-request-id" not in plain.headers
    assert asked.headers["client-request-id"] == "abc-123"


def test_well_known_calendar_contacts_tasks_exist(sim):
    account = exchangelib_account(sim, ALICE)
    assert account.calendar.name == "Calendar" and account.contacts.name == "Contacts"
    assert account.tasks.name == "Tasks"
    assert account.calendar.folder_class == "IPF.Appointment"


@pytest.mark.parametrize("destination", ["EwsId", "EwsLegacyId", "EntryId", "HexEntryId", "StoreId", "OwaId"])
def test_convert_id_round_trips(sim, destination):
    item_id = sim.deliver(ALICE, MailSpec(subject="c"))

    def convert(source_format: str, value: str, to: str) -> str:
        body = (
            f'<m:ConvertId DestinationFormat="{to}"><m:SourceIds>'
            f'<t:AlternateId Format="{source_format}" Id="{value}" Mailbox="{ALICE}"/>'
            "</m:SourceIds></m:ConvertId>"
        )
        root = parse(post(sim, soap_envelope(body), AUTH))
        assert response_code(root) == "NoError", root
        (alternate,) = find(root, "//m:AlternateId")
        assert alternate.get("Format") == to and alternate.get("Mailbox") == ALICE
        return alternate.get("Id")

    converted = convert("EwsId", item_id, destination)
    assert convert(destination, converted, "EwsId") == item_id


def test_convert_id_rejects_ids_of_no_item(sim):
    body = (
        '<m:ConvertId DestinationFormat="HexEntryId"><m:SourceIds>'
        f'<t:AlternateId Format="EwsId" Id="AAMkAGI2TG93AAA=" Mailbox="{ALICE}"/></m:SourceIds></m:ConvertId>'
    )
    assert response_code(parse(post(sim, soap_envelope(body), AUTH))) == "ErrorInvalidIdMalformed"


def test_get_is_not_allowed(sim):
    assert requests.get(sim.url, timeout=5).status_code == 405
