"""``POST /users/{id}/translateExchangeIds``: EWS ids ↔ REST ids ↔ immutable ids, per id with its own
error, as Graph answers (``convertIdResult``).

https://learn.microsoft.com/graph/api/user-translateexchangeids. Folder ids are the same in the REST and
the immutable form here (they never change anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foldertrack.simulator import ids as ews_ids
from foldertrack.simulator.graph import errors
from foldertrack.simulator.graph.ids import decode_immutable, ews_id, rest_id

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService
    from foldertrack.simulator.model import Mailbox

SOURCES = ("ewsId", "restId", "restImmutableEntryId")
TARGETS = ("ewsId", "restId", "restImmutableEntryId")


def _to_ews(service: GraphService, mb: Mailbox, text: str, source: str) -> str:
    """The current EWS id the input names; raises ``MalformedId`` or ``KeyError``."""
    if source == "restImmutableEntryId":
        decoded = decode_immutable(text)
        if decoded is None:
            return _to_ews(service, mb, text, "restId")  # folders: the REST form
        if decoded[0] != mb.number:
            raise KeyError(text)
        return mb.items[service.ids.resolve(mb, text)].id
    candidate = ews_id(text) if source == "restId" else text
    for kind in ("I", "F"):
        try:
            decoded_id = ews_ids.decode_id(candidate, kind)
        except ews_ids.MalformedId:
            continue
        if decoded_id.mailbox != mb.number:
            raise KeyError(text)
        return candidate
    raise ews_ids.MalformedId(text)


def translate(service: GraphService, mb: Mailbox, body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("inputIds"), list):
        raise errors.bad_request("inputIds is required.", "ErrorInvalidRequest")
    source, target = body.get("sourceIdType"), body.get("targetIdType")
    if source not in SOURCES or target not in TARGETS:
        raise errors.bad_request(
            f"Unsupported id type conversion {source} -> {target}.", "ErrorInvalidRequest"
        )
    out = []
    for text in body["inputIds"]:
        try:
            current = _to_ews(service, mb, str(text), source)
        except (ews_ids.MalformedId, KeyError):
            out.append(
                {
                    "sourceId": text,
                    "errorDetails": {"code": "ErrorInvalidIdMalformed", "message": "Id is malformed."},
                }
            )
            continue
        if target == "ewsId":
            converted = current
        elif target == "restId" or _is_folder(current):
            converted = rest_id(current)
        else:
            item = mb.items[ews_ids.decode_id(current, "I").serial]
            converted = service.ids.immutable_id(item)
        out.append({"sourceId": text, "targetId": converted})
    return out


def _is_folder(ews: str) -> bool:
    try:
        ews_ids.decode_id(ews, "F")
    except ews_ids.MalformedId:
        return False
    return True
