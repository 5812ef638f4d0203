"""What the webhook sink sends: the JSON body of each decision (schema ``webhook.schema.json`` beside this
module), the idempotency key outside a delivery, and the signature header with its receiver-side check.

Bodies are deterministic (no send time inside): a retry repeats the first attempt's bytes unless the mail's
local state changed meanwhile (an upsert is rebuilt from the local tables at delivery time; a later delivered
upsert then settles the key anyway). Receivers should deduplicate by ``Idempotency-Key`` and apply the
newest body, not reject a changed body under a known key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from importlib.resources import files
from typing import Any

from foldertrack.model import Activity, Attachment, Party, RecordRef

SIGNATURE_HEADER = "X-Foldertrack-Signature"
PAYLOAD_VERSION = 1


def payload_schema() -> dict[str, Any]:
    """The JSON Schema every webhook body follows (``foldertrack/sinks/webhook.schema.json``)."""
    return json.loads(files("foldertrack.sinks").joinpath("webhook.schema.json").read_text("utf-8"))


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: bytes, header: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """A receiver's check: the header is well formed, one ``v1`` matches the raw body, and ``t`` is within
    ``tolerance`` seconds of ``now`` (replays of old deliveries fail)."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in fields if name.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(
        name.strip() == "v1" and hmac.compare_digest(value.strip(), expected) for name, _, value in fields
    )


def _record(ref: RecordRef | None) -> dict[str, Any] | None:
    return None if ref is None else {"type": ref.type, "id": ref.id, "name": ref.name}


def _party(party: Party) -> dict[str, Any]:
    return {"role": party.role, "address": party.address, "name": party.name, "record": _record(party.record)}


def _attachment(attachment: Attachment, with_content: bool) -> dict[str, Any]:
    content = attachment.content
    out: dict[str, Any] = {
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "is_inline": attachment.is_inline,
        "sha256": hashlib.sha256(content).hexdigest() if content is not None else None,
    }
    if with_content and content is not None:
        out["content_base64"] = base64.b64encode(content).decode("ascii")
    return out


def activity_document(activity: Activity, *, include_body: bool, include_attachments: bool) -> dict:
    """The ``activity`` member of an upsert body."""

    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "key": activity.key,
        "mailbox": activity.mailbox,
        "folder_id": activity.folder_id,
        "folder_path": activity.folder_path,
        "message_id": activity.message_id,
        "conversation_id": activity.conversation_id,
        "subject": activity.subject,
        "direction": activity.direction,
        "state": activity.state,
        "regarding": _record(activity.regarding),
        "sender": activity.sender,
        "sent_at": when(activity.sent_at),
        "received_at": when(activity.received_at),
        "text_body": activity.text_body if include_body else None,
        "html_body": activity.html_body if include_body else None,
        "parties": [_party(p) for p in activity.parties],
        "attachments": [_attachment(a, include_attachments) for a in activity.attachments],
    }


def derived_key(op: str, key: str, document: dict[str, Any]) -> str:
    """Idempotency key when no outbox entry is being delivered: the same decision gives the same key."""
    content = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{op}\0{key}\0{content}".encode()).hexdigest()
    return f"ft1-{digest[:48]}"
