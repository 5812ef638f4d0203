"""Fetch the properties we store for a batch of items with one GetItem per chunk."""

from __future__ import annotations

from collections.abc import Sequence

from exchangelib import Account, Message
from exchangelib.fields import FieldPath
from exchangelib.items import ID_ONLY, Item
from exchangelib.services import GetItem

#: Message properties an activity is built from.
ITEM_FIELDS: tuple[str, ...] = (
    "message_id",
    "conversation_id",
    "subject",
    "text_body",
    "body",
    "sender",
    "author",
    "to_recipients",
    "cc_recipients",
    "bcc_recipients",
    "datetime_sent",
    "datetime_received",
    "attachments",
    "item_class",
    "size",
)
_FIELD_PATHS = frozenset(FieldPath(field=Message.get_field_by_fieldname(name)) for name in ITEM_FIELDS)
GET_ITEM_CHUNK = 50


def fetch_items(account: Account, item_ids: Sequence[str]) -> dict[str, Item | Exception]:
    """Item id → the item, or the per-item error EWS returned for it (e.g. ``ErrorItemNotFound`` when the
    item moved on since the sync saw it). A failure of the whole request raises."""
    results: dict[str, Item | Exception] = {}
    ids = list(dict.fromkeys(item_ids))
    for start in range(0, len(ids), GET_ITEM_CHUNK):
        chunk = ids[start : start + GET_ITEM_CHUNK]
        service = GetItem(account=account, chunk_size=GET_ITEM_CHUNK)
        fetched = list(
            service.call(items=[(i, None) for i in chunk], additional_fields=_FIELD_PATHS, shape=ID_ONLY)
        )
        for item_id, result in zip(chunk, fetched, strict=True):
            results[item_id] = result
    return results
