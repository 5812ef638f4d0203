"""The sample requests of Microsoft's EWS operation reference pages, posted as raw HTTP, get the documented
response shapes.

The samples are reproduced as published (default ``messages`` namespace, ``soap:`` prefix, mostly no
``RequestServerVersion``); only their shortened placeholder ids ("AAAlAF…") are replaced by real ids of
the simulator, and each sample is also posted with its placeholder, which Exchange answers with a
per-item ``ErrorInvalidIdMalformed``.
"""

from __future__ import annotations

import re

import pytest

from foldertrack.simulator import MailSpec
from foldertrack.testing.soap import find, parse, post, response_code

ALICE = "alice@example.com"
AUTH = (ALICE, "pw")

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TYPES = "http://schemas.microsoft.com/exchange/services/2006/types"
MESSAGES = "http://schemas.microsoft.com/exchange/services/2006/messages"


def sample(body: str, header: str = "") -> bytes:
    """The envelope the reference pages use around each operation."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        f'               xmlns:xsd="http://www.w3.org/2001/XMLSchema"\n'
        f'               xmlns:soap="{SOAP}"\n'
        f'               xmlns:t="{TYPES}">\n'
        f"  {'<soap:Header>' + header + '</soap:Header>' if header else ''}\n"
        f"  <soap:Body>\n{body}\n  </soap:Body>\n</soap:Envelope>\n"
    ).encode()


#: getitem-operation-email-message
GET_ITEM = f"""
    <GetItem xmlns="{MESSAGES}" xmlns:t="{TYPES}">
      <ItemShape>
        <t:BaseShape>Default</t:BaseShape>
        <t:IncludeMimeContent>true</t:IncludeMimeContent>
      </ItemShape>
      <ItemIds>
        <t:ItemId Id="{{item_id}}" ChangeKey="CQAAAB" />
      </ItemIds>
    </GetItem>"""

#: finditem-operation
FIND_ITEM = f"""
    <FindItem xmlns="{MESSAGES}" xmlns:t="{TYPES}" Traversal="Shallow">
      <ItemShape>
        <t:BaseShape>IdOnly</t:BaseShape>
      </ItemShape>
      <ParentFolderIds>
        <t:DistinguishedFolderId Id="deleteditems"/>
      </ParentFolderIds>
    </FindItem>"""

#: syncfolderitems-operation
SYNC_FOLDER_ITEMS = f"""
    <SyncFolderItems xmlns="{MESSAGES}">
      <ItemShape>
        <t:BaseShape>IdOnly</t:BaseShape>
      </ItemShape>
      <SyncFolderId>
        <t:FolderId Id="{{folder_id}}"/>
      </SyncFolderId>
      <MaxChangesReturned>100</MaxChangesReturned>
    </SyncFolderItems>"""

#: createitem-operation-email-message (save a draft)
CREATE_ITEM = f"""
    <CreateItem MessageDisposition="SaveOnly" xmlns="{MESSAGES}">
      <SavedItemFolderId>
        <t:DistinguishedFolderId Id="drafts" />
      </SavedItemFolderId>
      <Items>
        <t:Message>
          <t:ItemClass>IPM.Note</t:ItemClass>
          <t:Subject>Project Action</t:Subject>
          <t:Body BodyType="Text">Priority - Update specification</t:Body>
          <t:ToRecipients>
            <t:Mailbox>
              <t:EmailAddress>sschmidt@example.com</t:EmailAddress>
            </t:Mailbox>
          </t:ToRecipients>
          <t:IsRead>false</t:IsRead>
        </t:Message>
      </Items>
    </CreateItem>"""

#: createattachment-operation (file attachment)
CREATE_ATTACHMENT = f"""
    <CreateAttachment xmlns="{MESSAGES}" xmlns:t="{TYPES}">
      <ParentItemId Id="{{item_id}}" ChangeKey="CQAAABYA"/>
      <Attachments>
        <t:FileAttachment>
          <t:Name>SomeFile</t:Name>
          <t:Content>AQIDBAU=</t:Content>
        </t:FileAttachment>
      </Attachments>
    </CreateAttachment>"""

#: subscribe-operation (streaming)
SUBSCRIBE = f"""
    <m:Subscribe xmlns:m="{MESSAGES}">
      <m:StreamingSubscriptionRequest>
        <t:FolderIds>
          <t:DistinguishedFolderId Id="inbox" />
        </t:FolderIds>
        <t:EventTypes>
          <t:EventType>NewMailEvent</t:EventType>
          <t:EventType>CreatedEvent</t:EventType>
          <t:EventType>DeletedEvent</t:EventType>
          <t:EventType>ModifiedEvent</t:EventType>
          <t:EventType>MovedEvent</t:EventType>
          <t:EventType>CopiedEvent</t:EventType>
          <t:EventType>FreeBusyChangedEvent</t:EventType>
        </t:EventTypes>
      </m:StreamingSubscriptionRequest>
    </m:Subscribe>"""

#: getstreamingevents-operation
GET_STREAMING_EVENTS = f"""
    <GetStreamingEvents xmlns="{MESSAGES}">
      <SubscriptionIds>
        <t:SubscriptionId>{{subscription_id}}</t:SubscriptionId>
      </SubscriptionIds>
      <ConnectionTimeout>30</ConnectionTimeout>
    </GetStreamingEvents>"""

#: convertid-operation
CONVERT_ID = f"""
    <m:ConvertId xmlns:m="{MESSAGES}" DestinationFormat="HexEntryId">
      <m:SourceIds>
        <t:AlternateId Format="EwsId" Id="{{item_id}}" Mailbox="{ALICE}"/>
      </m:SourceIds>
    </m:ConvertId>"""

RSV_2010 = '<t:RequestServerVersion Version="Exchange2010_SP1" />'


@pytest.fixture
def sim(simulator_factory):
    sim = simulator_factory(minute=0.05, heartbeat=0.2)  # a 30 "minute" stream lasts 1.5 s
    sim.add_mailbox(ALICE)
    return sim


def ok(response, message: str):
    assert response.status_code == 200, response.text[:500]
    root = parse(response)
    assert find(root, f"//m:{message}/@ResponseClass") == ["Success"], response.text[:500]
    assert response_code(root) == "NoError"
    return root


def test_get_item_sample(sim):
    item_id = sim.deliver(ALICE, MailSpec(subject="Sample", to=[ALICE]))
    root = ok(post(sim, sample(GET_ITEM.format(item_id=item_id)), AUTH), "GetItemResponseMessage")
    (message,) = find(root, "//m:GetItemResponseMessage/m:Items/t:Message")
    assert find(message, "t:MimeContent/@CharacterSet") == ["UTF-8"]
    assert find(message, "t:ItemId/@Id") == [item_id]
    assert find(message, "t:Subject/text()") == ["Sample"]
    assert find(message, "t:Body/@BodyType") == ["Text"]
    # the published placeholder id: a per-item error, the request itself succeeds
    response = post(sim, sample(GET_ITEM.format(item_id="AAAlAF")), AUTH)
    assert response.status_code == 200
    root = parse(response)
    assert find(root, "//m:GetItemResponseMessage/@ResponseClass") == ["Error"]
    assert response_code(root) == "ErrorInvalidIdMalformed"
    assert find(root, "//m:GetItemResponseMessage/m:Items")  # empty Items, as Exchange sends


def test_find_item_sample(sim):
    mb = sim.mailbox(ALICE)
    mb.delete_item(sim.deliver(ALICE, MailSpec(subject="bin me")))
    root = ok(post(sim, sample(FIND_ITEM), AUTH), "FindItemResponseMessage")
    (folder,) = find(root, "//m:RootFolder")
    assert folder.get("TotalItemsInView") == "1" and folder.get("IncludesLastItemInRange") == "true"
    (message,) = find(folder, "t:Items/t:Message")
    assert [c.tag for c in message] == [f"{{{TYPES}}}ItemId"]  # IdOnly


def test_sync_folder_items_sample(sim):
    sim.deliver(ALICE, MailSpec(subject="one"))
    sim.deliver(ALICE, MailSpec(subject="two"))
    folder_id = sim.mailbox(ALICE).folder_id("Inbox")
    root = ok(
        post(sim, sample(SYNC_FOLDER_ITEMS.format(folder_id=folder_id)), AUTH),
        "SyncFolderItemsResponseMessage",
    )
    msg = find(root, "//m:SyncFolderItemsResponseMessage")[0]
    assert [c.tag.rpartition("}")[2] for c in msg] == [
        "ResponseCode",
        "SyncState",
        "IncludesLastItemInRange",
        "Changes",
    ]
    assert len(find(msg, "m:Changes/t:Create/t:Message/t:ItemId")) == 2


def test_create_item_and_create_attachment_samples(sim):
    root = ok(post(sim, sample(CREATE_ITEM), AUTH), "CreateItemResponseMessage")
    (item_id,) = find(root, "//m:CreateItemResponseMessage/m:Items/t:Message/t:ItemId/@Id")
    (draft,) = sim.mailbox(ALICE).items("Drafts")
    assert draft.subject == "Project Action" and draft.id == item_id and not draft.is_read
    root = ok(
        post(sim, sample(CREATE_ATTACHMENT.format(item_id=item_id)), AUTH), "CreateAttachmentResponseMessage"
    )
    (att,) = find(root, "//m:CreateAttachmentResponseMessage/m:Attachments/t:FileAttachment/t:AttachmentId")
    assert att.get("RootItemId") == item_id and att.get("RootItemChangeKey") and att.get("Id")


def test_subscribe_and_get_streaming_events_samples(sim):
    root = ok(post(sim, sample(SUBSCRIBE, RSV_2010), AUTH), "SubscribeResponseMessage")
    (subscription_id,) = find(root, "//m:SubscribeResponseMessage/m:SubscriptionId/text()")
    assert not find(root, "//m:SubscribeResponseMessage/m:Watermark")  # streaming: no watermark
    data = sample(GET_STREAMING_EVENTS.format(subscription_id=subscription_id), RSV_2010)
    with post(sim, data, AUTH, stream=True) as response:
        assert response.status_code == 200
        sim.deliver(ALICE, MailSpec(subject="notify me"))
        raw = b"".join(response.iter_content(None))
    documents = re.findall(rb"<Envelope .*?</Envelope>", raw, re.S)
    events = [find(parse_doc(d), "//t:Notification/*") for d in documents]
    kinds = {e.tag.rpartition("}")[2] for doc in events for e in doc}
    assert {"SubscriptionId", "CreatedEvent", "NewMailEvent", "ModifiedEvent"} <= kinds
    statuses = [find(parse_doc(d), "//m:ConnectionStatus/text()") for d in documents]
    assert statuses[-1] == ["Closed"] and all(s in (["OK"], ["Closed"]) for s in statuses)


def parse_doc(document: bytes):
    from lxml import etree

    return etree.fromstring(document)


def test_convert_id_sample(sim):
    item_id = sim.deliver(ALICE, MailSpec(subject="convert"))
    root = ok(
        post(sim, sample(CONVERT_ID.format(item_id=item_id), RSV_2010), AUTH), "ConvertIdResponseMessage"
    )
    (alternate,) = find(root, "//m:ConvertIdResponseMessage/m:AlternateId")
    assert alternate.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "t:AlternateIdType"
    assert alternate.get("Format") == "HexEntryId" and alternate.get("Mailbox") == ALICE
    assert re.fullmatch(r"[0-9A-F]+", alternate.get("Id"))
