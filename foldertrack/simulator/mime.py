"""Real RFC 5322 mail: build it (:class:`MailSpec`, :func:`build_mime`) and read it (:func:`parse_mime`).

Only the stdlib ``email`` package is used, with the modern ``policy.default`` so that non-ASCII headers and
bodies round-trip (RFC 2047 encoded words, UTF-8 bodies, RFC 2231 attachment names).
"""

from __future__ import annotations

import datetime as dt
import email
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message

__all__ = [
    "Address",
    "MailSpec",
    "ParsedAttachment",
    "ParsedMail",
    "add_attachment",
    "build_mime",
    "parse_mime",
    "remove_attachment",
]


@dataclass(frozen=True)
class Address:
    name: str
    email: str


@dataclass
class MailSpec:
    """What a test or the demo wants delivered; :meth:`to_mime` turns it into real MIME bytes."""

    subject: str = "(no subject)"
    sender: str = "sender@example.net"
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    body: str | None = "Hello."
    html_body: str | None = None
    message_id: str | None = None  # generated when None; "" means: no Message-ID header at all
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (name, content type, bytes)
    sent_at: dt.datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_mime(self) -> bytes:
        return build_mime(self)


def build_mime(spec: MailSpec) -> bytes:
    """Build RFC 5322 bytes (multipart when there is an HTML part or attachments)."""
    msg = EmailMessage(policy=policy.SMTP)
    if spec.sender:
        msg["From"] = spec.sender
    if spec.to:
        msg["To"] = ", ".join(spec.to)
    if spec.cc:
        msg["Cc"] = ", ".join(spec.cc)
    if spec.bcc:
        msg["Bcc"] = ", ".join(spec.bcc)
    msg["Subject"] = spec.subject
    sent_at = spec.sent_at or dt.datetime.now(dt.UTC)
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=dt.UTC)
    msg["Date"] = email.utils.format_datetime(sent_at)
    if spec.message_id is None:
        msg["Message-ID"] = email.utils.make_msgid(domain="simulator.foldertrack.invalid")
    elif spec.message_id:
        mid = spec.message_id if spec.message_id.startswith("<") else f"<{spec.message_id}>"
        msg["Message-ID"] = mid
    if spec.in_reply_to:
        msg["In-Reply-To"] = spec.in_reply_to
    if spec.references:
        msg["References"] = " ".join(spec.references)
    for name, value in spec.headers.items():
        msg[name] = value
    msg["MIME-Version"] = "1.0"
    if spec.body is not None or spec.html_body is None:
        msg.set_content(spec.body or "", charset="utf-8", cte="quoted-printable")
        if spec.html_body is not None:
            msg.add_alternative(spec.html_body, subtype="html", charset="utf-8", cte="quoted-printable")
    else:
        msg.set_content(spec.html_body, subtype="html", charset="utf-8", cte="quoted-printable")
    for name, content_type, data in spec.attachments:
        maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=name)
    return msg.as_bytes()


@dataclass
class ParsedAttachment:
    name: str
    content_type: str
    content: bytes
    content_id: str | None = None
    is_inline: bool = False


@dataclass
class ParsedMail:
    """The properties EWS exposes for a message, read once from its MIME."""

    subject: str = ""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    message_id: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    sent_at: dt.datetime | None = None
    text_body: str | None = None
    html_body: str | None = None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    importance: str = "Normal"

    @property
    def conversation_topic(self) -> str:
        return re.sub(r"^\s*((re|fw|fwd|aw|wg|sv)\s*:\s*)+", "", self.subject, flags=re.IGNORECASE)

    @property
    def conversation_key(self) -> bytes:
        """Stable per thread: the first Message-ID of References, else In-Reply-To, else the topic."""
        first = (self.references or "").split()
        root = first[0] if first else (self.in_reply_to or self.message_id or self.conversation_topic)
        if not first and not self.in_reply_to:
            root = self.conversation_topic.lower() or (self.message_id or "")
        return hashlib.sha1(root.encode("utf-8", "replace")).digest()


def _addresses(msg: Message, name: str) -> list[Address]:
    values = msg.get_all(name) or []
    out = []
    for display, addr in email.utils.getaddresses([str(v) for v in values]):
        if addr or display:
            out.append(Address(display, addr))
    return out


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    return " ".join(str(value).split())


def parse_mime(data: bytes) -> ParsedMail:
    """Parse MIME bytes leniently: a broken mail still becomes an item, like on a real server."""
    msg = email.message_from_bytes(data, policy=policy.default)
    parsed = ParsedMail()
    try:
        parsed.subject = _header(msg, "Subject") or ""
    except Exception:  # a mail with an undecodable header still arrives
        parsed.subject = ""
    senders = _addresses(msg, "From")
    parsed.sender = senders[0] if senders else None
    parsed.to = _addresses(msg, "To")
    parsed.cc = _addresses(msg, "Cc")
    parsed.bcc = _addresses(msg, "Bcc")
    parsed.reply_to = _addresses(msg, "Reply-To")
    parsed.message_id = _header(msg, "Message-ID")
    parsed.in_reply_to = _header(msg, "In-Reply-To")
    parsed.references = _header(msg, "References")
    date = msg.get("Date")
    if date is not None:
        try:
            parsed.sent_at = email.utils.parsedate_to_datetime(str(date))
            if parsed.sent_at.tzinfo is None:
                parsed.sent_at = parsed.sent_at.replace(tzinfo=dt.UTC)
        except (TypeError, ValueError):
            parsed.sent_at = None
    importance = (_header(msg, "Importance") or "").lower()
    if importance in ("high", "low"):
        parsed.importance = importance.capitalize()
    for key, value in msg.raw_items():
        parsed.headers.append((key, " ".join(str(value).split())))
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        ctype = part.get_content_type()
        if disposition == "attachment" or filename or (disposition == "inline" and part.get("Content-ID")):
            payload = part.get_payload(decode=True) or b""
            content_id = (part.get("Content-ID") or "").strip("<> ") or None
            parsed.attachments.append(
                ParsedAttachment(
                    filename or "attachment", ctype, payload, content_id, disposition == "inline"
                )
            )
            continue
        if ctype == "text/plain" and parsed.text_body is None:
            parsed.text_body = _text(part)
        elif ctype == "text/html" and parsed.html_body is None:
            parsed.html_body = _text(part)
    return parsed


def _text(part: Message) -> str:
    try:
        return part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, KeyError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _is_attachment_part(part: Message) -> bool:
    """The same test :func:`parse_mime` applies, so attachment indexes agree."""
    disposition = part.get_content_disposition()
    return bool(
        disposition == "attachment"
        or part.get_filename()
        or (disposition == "inline" and part.get("Content-ID"))
    )


def add_attachment(
    data: bytes,
    name: str,
    content_type: str,
    content: bytes,
    *,
    is_inline: bool = False,
    content_id: str | None = None,
) -> bytes:
    """The MIME with one more file attachment (CreateItem with attachments, CreateAttachment)."""
    msg = email.message_from_bytes(data, policy=policy.default)
    maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
    headers = [f"Content-ID: <{content_id}>"] if content_id else None
    msg.add_attachment(  # type: ignore[attr-defined]
        content,
        maintype=maintype,
        subtype=subtype or "octet-stream",
        filename=name,
        disposition="inline" if is_inline else "attachment",
        headers=headers,
    )
    return msg.as_bytes(policy=policy.SMTP)


def remove_attachment(data: bytes, index: int) -> bytes:
    """The MIME without its ``index``-th attachment (in :func:`parse_mime` order): DeleteAttachment."""
    msg = email.message_from_bytes(data, policy=policy.default)
    found = [part for part in msg.walk() if not part.is_multipart() and _is_attachment_part(part)]
    victim = found[index]
    for container in msg.walk():
        if container.is_multipart():
            payload = container.get_payload()
            if isinstance(payload, list) and any(p is victim for p in payload):
                container.set_payload([p for p in payload if p is not victim])
                break
    return msg.as_bytes(policy=policy.SMTP)
