"""Folders and items as EWS XML, honouring the response shape (IdOnly / Default / AllProperties + extras)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from dataclasses import dataclass, field

from lxml import etree

from foldertrack.simulator.mime import Address
from foldertrack.simulator.model import Folder, Item, Mailbox
from foldertrack.simulator.profiles import EXCHANGE2010, EXCHANGE2013, response_options
from foldertrack.simulator.soap import M, T, bool_text, sub, xs_bool

_FOLDER_FIELDS = (
    "FolderId",
    "ParentFolderId",
    "FolderClass",
    "DisplayName",
    "TotalCount",
    "ChildFolderCount",
)
_FOLDER_DEFAULT = {"FolderId", "DisplayName", "TotalCount", "ChildFolderCount", "UnreadCount"}
_ITEM_DEFAULT = {
    "ItemId", "ParentFolderId", "ItemClass", "Subject", "Sensitivity", "DateTimeReceived", "Size",
    "Importance", "IsSubmitted", "IsDraft", "IsFromMe", "IsResend", "IsUnmodified", "DateTimeSent",
    "DateTimeCreated", "DisplayCc", "DisplayTo", "HasAttachments", "LastModifiedTime", "IsAssociated",
    "ConversationId", "Sender", "From", "IsRead", "InternetMessageId",
    # as in the GetItem (email message) reference response: GetItem's Default also has these
    "Body", "ToRecipients", "CcRecipients", "IsReadReceiptRequested", "IsDeliveryReceiptRequested",
}  # fmt: skip
_ALL_EXCLUDES = {"MimeContent", "TextBody", "UniqueBody", "NormalizedBody", "InternetMessageHeaders"}
#: FindItem never returns bodies, attachments or recipient lists (only GetItem does), whatever was asked
_FIND_EXCLUDES = frozenset(
    {
        "MimeContent", "Body", "TextBody", "UniqueBody", "NormalizedBody", "Attachments", "ToRecipients",
        "CcRecipients", "BccRecipients", "ReplyTo", "InternetMessageHeaders",
    }
)  # fmt: skip
#: elements newer than Exchange 2007: a request for an older schema version does not get them
_SINCE = {
    "ConversationId": EXCHANGE2010,
    "IsAssociated": EXCHANGE2010,
    "UniqueBody": EXCHANGE2010,
    "TextBody": EXCHANGE2013,
    "NormalizedBody": EXCHANGE2013,
    "DistinguishedFolderId": EXCHANGE2013,
}


def ews_datetime(value: dt.datetime) -> str:
    """xs:dateTime in UTC: whole seconds like Exchange, milliseconds when the request's DateTimePrecision
    asks, or as many fractional digits as the server profile writes."""
    value = value.astimezone(dt.UTC)
    options = response_options()
    digits = options.profile.fraction_digits or (3 if options.milliseconds else 0)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        nanos = f"{value.microsecond:06d}{value.microsecond % 10}00"  # .NET ticks: 7 digits, then 2 zeros
        text += "." + nanos[:digits]
    return text + "Z"


@dataclass
class Shape:
    base: str = "Default"  # IdOnly, Default, AllProperties
    extra: set[str] = field(default_factory=set)  # element names from t:FieldURI
    body_type: str = "Best"
    find: bool = False  # a FindItem response: no bodies, attachments or recipient lists
    version: int = field(default_factory=lambda: response_options().version)

    @classmethod
    def parse(cls, elem: etree._Element | None) -> Shape:
        if elem is None:
            return cls()
        shape = cls(base=(elem.findtext(T("BaseShape")) or "Default").strip())
        shape.body_type = (elem.findtext(T("BodyType")) or "Best").strip()
        if xs_bool(elem.findtext(T("IncludeMimeContent"))):
            shape.extra.add("MimeContent")
        props = elem.find(T("AdditionalProperties"))
        if props is not None:
            for uri in props.iter(T("FieldURI")):
                shape.extra.add((uri.get("FieldURI") or "").rpartition(":")[2])
        return shape

    def wants(self, name: str, default: set[str]) -> bool:
        if name in ("ItemId", "FolderId"):
            return True
        if (self.find and name in _FIND_EXCLUDES) or self.version < _SINCE.get(name, 0):
            return False
        if name in self.extra:
            return True
        if self.base == "AllProperties":
            return name not in _ALL_EXCLUDES
        return self.base == "Default" and name in default


def folder_element(parent: etree._Element, mb: Mailbox, folder: Folder, shape: Shape) -> etree._Element:
    elem = sub(parent, T("Folder"))
    values = {
        "ParentFolderId": None,
        "FolderClass": folder.folder_class,
        "DisplayName": folder.name,
        "TotalCount": len(folder.items),
        "ChildFolderCount": sum(1 for s in folder.children if not mb.folders[s].deleted),
    }
    for name in _FOLDER_FIELDS:
        if not shape.wants(name, _FOLDER_DEFAULT):
            continue
        if name == "FolderId":
            sub(elem, T("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
        elif name == "ParentFolderId":
            if folder.parent is not None:
                parent_folder = mb.folders[folder.parent]
                sub(elem, T("ParentFolderId"), Id=parent_folder.id, ChangeKey=parent_folder.change_key)
        elif values[name] is not None:
            sub(elem, T(name), values[name])
    if shape.wants("DistinguishedFolderId", set()) and folder.distinguished and shape.base != "Default":
        sub(elem, T("DistinguishedFolderId"), folder.distinguished)
    if shape.wants("UnreadCount", _FOLDER_DEFAULT):
        sub(elem, T("UnreadCount"), mb.unread_count(folder))
    return elem


def _address(box: etree._Element, addr: Address) -> None:
    """One ``t:Mailbox`` (EmailAddressType) inside ``box``."""
    mailbox = sub(box, T("Mailbox"))
    if addr.name:
        sub(mailbox, T("Name"), addr.name)
    sub(mailbox, T("EmailAddress"), addr.email)
    sub(mailbox, T("RoutingType"), "SMTP")
    sub(mailbox, T("MailboxType"), "OneOff")


def _mailbox(parent: etree._Element, tag: str, addr: Address) -> None:
    _address(sub(parent, T(tag)), addr)


def _recipients(parent: etree._Element, tag: str, addrs: list[Address]) -> None:
    if not addrs:
        return
    box = sub(parent, T(tag))
    for addr in addrs:
        _address(box, addr)


def _display(addrs: list[Address]) -> str:
    return "; ".join(a.name or a.email for a in addrs)


def html_to_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"(?is)<(script|style).*?</\1>", "", markup))).strip()


def attachment_element(parent: etree._Element, item: Item, index: int, with_content: bool) -> None:
    att = item.mail.attachments[index]
    elem = sub(parent, T("FileAttachment"))
    sub(elem, T("AttachmentId"), Id=item.attachment_id(index))
    sub(elem, T("Name"), att.name)
    sub(elem, T("ContentType"), att.content_type)
    if att.content_id:
        sub(elem, T("ContentId"), att.content_id)
    if response_options().version >= EXCHANGE2010:  # Size … IsContactPhoto came with Exchange 2010
        sub(elem, T("Size"), len(att.content))
        sub(elem, T("LastModifiedTime"), ews_datetime(item.created).rstrip("Z"))
        sub(elem, T("IsInline"), bool_text(att.is_inline))
        sub(elem, T("IsContactPhoto"), "false")
    if with_content:
        sub(elem, T("Content"), base64.b64encode(att.content).decode())


def conversation_id(item: Item) -> str:
    return base64.b64encode(b"\x00\x00\x00\x00\x00\x10FT" + item.mail.conversation_key[:16]).decode()


#: item class prefix → the element a non-mail item is rendered as (every other class is a ``t:Message``)
ITEM_ELEMENTS: tuple[tuple[str, str], ...] = (
    ("IPM.CONTACT", "Contact"),
    ("IPM.APPOINTMENT", "CalendarItem"),
    ("IPM.TASK", "Task"),
)


def item_tag(item_class: str) -> str:
    folded = item_class.upper()
    return next((tag for prefix, tag in ITEM_ELEMENTS if folded.startswith(prefix)), "Message")


def item_element(parent: etree._Element, mb: Mailbox, item: Item, shape: Shape) -> etree._Element:
    """A ``t:Message`` (or, for a contact, appointment or task, an element with only the generic item
    properties) with the shape's properties, in the schema's element order."""
    mail = item.mail
    tag = item_tag(item.item_class)
    elem = sub(parent, T(tag))

    def want(name: str) -> bool:
        return shape.wants(name, _ITEM_DEFAULT)

    if want("MimeContent"):
        sub(elem, T("MimeContent"), base64.b64encode(item.mime).decode(), CharacterSet="UTF-8")
    sub(elem, T("ItemId"), Id=item.id, ChangeKey=item.change_key)
    if want("ParentFolderId"):
        folder = mb.folders[item.folder]
        sub(elem, T("ParentFolderId"), Id=folder.id, ChangeKey=folder.change_key)
    if want("ItemClass"):
        sub(elem, T("ItemClass"), item.item_class)
    if want("Subject"):
        sub(elem, T("Subject"), mail.subject)
    if want("Sensitivity"):
        sub(elem, T("Sensitivity"), "Normal")
    text_bodies = response_options().profile.text_body
    if want("Body"):
        use_html = shape.body_type == "HTML" or (
            mail.html_body is not None and (shape.body_type == "Best" or not text_bodies)
        )
        if use_html:
            text = mail.html_body if mail.html_body is not None else html.escape(mail.text_body or "")
            sub(elem, T("Body"), text, BodyType="HTML")
        else:
            text = mail.text_body if mail.text_body is not None else html_to_text(mail.html_body or "")
            sub(elem, T("Body"), text, BodyType="Text")
    if want("Attachments") and mail.attachments:
        atts = sub(elem, T("Attachments"))
        for index in range(len(mail.attachments)):
            attachment_element(atts, item, index, with_content=False)
    if want("DateTimeReceived") and response_options().profile.date_time_received:
        sub(elem, T("DateTimeReceived"), ews_datetime(item.received))
    if want("Size"):
        sub(elem, T("Size"), item.size)
    if want("Categories") and item.categories:
        cats = sub(elem, T("Categories"))
        for cat in item.categories:
            sub(cats, T("String"), cat)
    if want("Importance"):
        sub(elem, T("Importance"), mail.importance)
    if want("InReplyTo") and mail.in_reply_to:
        sub(elem, T("InReplyTo"), mail.in_reply_to)
    if want("IsSubmitted"):
        sub(elem, T("IsSubmitted"), "false")
    if want("IsDraft"):
        sub(elem, T("IsDraft"), bool_text(item.is_draft))
    is_from_me = mail.sender is not None and mail.sender.email.lower() == mb.address.lower()
    if want("IsFromMe"):
        sub(elem, T("IsFromMe"), bool_text(is_from_me))
    if want("IsResend"):
        sub(elem, T("IsResend"), "false")
    if want("IsUnmodified"):
        sub(elem, T("IsUnmodified"), bool_text(item.version == 1))
    if want("InternetMessageHeaders") and mail.headers:
        headers = sub(elem, T("InternetMessageHeaders"))
        for name, value in mail.headers:
            sub(headers, T("InternetMessageHeader"), value, HeaderName=name)
    if want("DateTimeSent"):
        sub(elem, T("DateTimeSent"), ews_datetime(mail.sent_at or item.received))
    if want("DateTimeCreated"):
        sub(elem, T("DateTimeCreated"), ews_datetime(item.created))
    if want("DisplayCc"):
        sub(elem, T("DisplayCc"), _display(mail.cc))
    if want("DisplayTo"):
        sub(elem, T("DisplayTo"), _display(mail.to))
    if want("HasAttachments"):
        sub(elem, T("HasAttachments"), bool_text(any(not a.is_inline for a in mail.attachments)))
    if want("LastModifiedTime"):
        sub(elem, T("LastModifiedTime"), ews_datetime(item.modified))
    if want("IsAssociated"):
        sub(elem, T("IsAssociated"), "false")
    if want("ConversationId"):
        sub(elem, T("ConversationId"), Id=conversation_id(item))
    if want("TextBody") and text_bodies:
        text = mail.text_body if mail.text_body is not None else html_to_text(mail.html_body or "")
        sub(elem, T("TextBody"), text, BodyType="Text")
    if tag != "Message":
        return elem  # the rest are MessageType properties
    if want("Sender") and mail.sender is not None:
        _mailbox(elem, "Sender", mail.sender)
    if want("ToRecipients"):
        _recipients(elem, "ToRecipients", mail.to)
    if want("CcRecipients"):
        _recipients(elem, "CcRecipients", mail.cc)
    if want("BccRecipients"):
        _recipients(elem, "BccRecipients", mail.bcc)
    if want("IsReadReceiptRequested"):
        sub(elem, T("IsReadReceiptRequested"), "false")
    if want("IsDeliveryReceiptRequested"):
        sub(elem, T("IsDeliveryReceiptRequested"), "false")
    if want("ConversationIndex"):
        sub(elem, T("ConversationIndex"), base64.b64encode(b"\x01" + mail.conversation_key[:21]).decode())
    if want("ConversationTopic"):
        sub(elem, T("ConversationTopic"), mail.conversation_topic)
    if want("From") and mail.sender is not None:
        _mailbox(elem, "From", mail.sender)
    if want("InternetMessageId") and mail.message_id:
        sub(elem, T("InternetMessageId"), mail.message_id)
    if want("IsRead"):
        sub(elem, T("IsRead"), bool_text(item.is_read))
    if want("References") and mail.references:
        sub(elem, T("References"), mail.references)
    if want("ReplyTo"):
        _recipients(elem, "ReplyTo", mail.reply_to)
    if want("ReceivedBy"):
        _mailbox(elem, "ReceivedBy", Address(mb.display_name, mb.address))
    return elem


def items_container(parent: etree._Element, tag: str = "Items") -> etree._Element:
    return sub(parent, M(tag))
