"""``messages/delta`` and ``mailFolders/delta``: a chain of pages linked by ``@odata.nextLink``, ending
with ``@odata.deltaLink``; later calls on the delta link return only what changed since.

https://learn.microsoft.com/graph/api/message-delta, https://learn.microsoft.com/graph/api/mailfolder-delta

Tokens are opaque to clients; ours carry the mailbox change sequence the round started from (the same
net-change computation as EWS ``SyncFolderItems``, :mod:`foldertrack.simulator.changes`), the query
options of the first request (as Graph encodes them into its links) and the fault generation:
``sim.graph.faults.expire_delta_tokens()`` makes every older token answer 410 ``SyncStateNotFound``.
A message that left the folder (moved, deleted) is ``{"id": …, "@removed": {"reason": "deleted"}}``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from foldertrack.simulator.changes import item_changes
from foldertrack.simulator.graph import errors, render
from foldertrack.simulator.graph.ids import folder_rest_id
from foldertrack.simulator.graph.query import Preferences, Query
from foldertrack.simulator.ids import SyncPosition
from foldertrack.simulator.model import Folder, Mailbox

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService

DEFAULT_PAGE = 10
MAX_PAGE = 1000
CHANGE_TYPES = {"created": ("Create",), "updated": ("Update", "ReadFlagChange"), "deleted": ("Delete",)}


@dataclass(frozen=True)
class DeltaToken:
    kind: str  # "m" messages, "f" folders
    mailbox: int
    folder: int  # folder serial ("m") or 0
    base: int
    end: int = 0
    offset: int = 0
    select: tuple[str, ...] | None = None
    change_type: str | None = None
    generation: int = 0

    def encode(self) -> str:
        body = json.dumps(
            [
                self.kind,
                self.mailbox,
                self.folder,
                self.base,
                self.end,
                self.offset,
                list(self.select) if self.select is not None else None,
                self.change_type,
                self.generation,
            ],
            separators=(",", ":"),
        ).encode()
        raw = body + zlib.crc32(body).to_bytes(4, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> DeltaToken:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            body, crc = raw[:-4], int.from_bytes(raw[-4:], "big")
            if zlib.crc32(body) != crc:
                raise ValueError("checksum")
            kind, mailbox, folder, base, end, offset, select, change_type, generation = json.loads(body)
        except (binascii.Error, ValueError, TypeError):
            raise errors.sync_state_not_found() from None
        return cls(
            kind,
            mailbox,
            folder,
            base,
            end,
            offset,
            tuple(select) if select is not None else None,
            change_type,
            generation,
        )


def _page_size(prefs: Preferences) -> int:
    return min(prefs.max_page_size or DEFAULT_PAGE, MAX_PAGE)


def _start_token(
    service: GraphService, kind: str, mb: Mailbox, folder: int, query: Query, params: dict[str, str]
) -> DeltaToken:
    token = params.get("$deltatoken") or params.get("$skiptoken")
    if token:
        found = DeltaToken.decode(token)
        if found.kind != kind or found.mailbox != mb.number or found.folder != folder:
            raise errors.sync_state_not_found()
        if found.generation != service.faults.delta_generation:
            raise errors.sync_state_not_found()
        return found
    change_type = params.get("changeType") or params.get("changetype")
    if change_type is not None and change_type not in CHANGE_TYPES:
        raise errors.bad_request(f"Invalid changeType '{change_type}'.")
    return DeltaToken(
        kind,
        mb.number,
        folder,
        0,
        select=query.select,
        change_type=change_type,
        generation=service.faults.delta_generation,
    )


def _links(out: dict[str, Any], link: str, token: DeltaToken, more: bool) -> dict[str, Any]:
    if more:
        out["@odata.nextLink"] = f"{link}?$skiptoken={quote(token.encode())}"
    else:
        out["@odata.deltaLink"] = f"{link}?$deltatoken={quote(token.encode())}"
    return out


def message_delta(
    service: GraphService,
    mb: Mailbox,
    folder: Folder,
    query: Query,
    prefs: Preferences,
    params: dict[str, str],
    link: str,
    context: str,
) -> dict[str, Any]:
    """One page of the folder's message delta; ``link`` is this request's URL without its query."""
    token = _start_token(service, "m", mb, folder.serial, query, params)
    select = render.resolve_select(token.select, render.MESSAGE_PROPERTIES, "message")
    position = SyncPosition(mb.number, folder.serial, token.base, token.end, token.offset)
    changes, after, includes_last = item_changes(mb, folder, position, _page_size(prefs))
    wanted = CHANGE_TYPES.get(token.change_type or "")
    value: list[dict[str, Any]] = []
    for kind, item in changes:
        if wanted is not None and kind not in wanted:
            continue
        item_id = service.ids.item_id(item, prefs.immutable_ids)
        if kind == "Delete":
            value.append(
                {"@odata.type": "#microsoft.graph.message", "id": item_id, "@removed": {"reason": "deleted"}}
            )
        else:
            value.append(
                {
                    "@odata.type": "#microsoft.graph.message",
                    **render.message(
                        item,
                        service.ids,
                        immutable=prefs.immutable_ids,
                        select=select,
                        body_type=prefs.body_type,
                    ),
                }
            )
    following = DeltaToken(
        "m",
        mb.number,
        folder.serial,
        after.base,
        after.end,
        after.offset,
        token.select,
        token.change_type,
        token.generation,
    )
    return _links({"@odata.context": context, "value": value}, link, following, not includes_last)


def _net(log: list[tuple[int, str, int]], base: int, end: int) -> list[tuple[str, int]]:
    """Net Create/Update/Delete per serial of the log entries in (``base``, ``end``], first-seen order."""
    start = bisect.bisect_right(log, base, key=lambda entry: entry[0])
    state: dict[int, list[bool]] = {}  # serial -> [existed before, exists after, updated]
    for seq, op, serial in log[start:]:
        if seq > end:
            break
        entry = state.setdefault(serial, [op != "add", op != "add", False])
        if op == "add":
            entry[1] = True
        elif op == "remove":
            entry[1] = False
        else:
            entry[2] = True
    out = []
    for serial, (before, after, updated) in state.items():
        if before and not after:
            out.append(("Delete", serial))
        elif after and not before:
            out.append(("Create", serial))
        elif before and after and updated:
            out.append(("Update", serial))
    return out


def folder_delta(
    service: GraphService,
    mb: Mailbox,
    query: Query,
    prefs: Preferences,
    params: dict[str, str],
    link: str,
    context: str,
) -> dict[str, Any]:
    """One page of the mailbox's folder delta: every mail folder below the message folder root, flat."""
    token = _start_token(service, "f", mb, 0, query, params)
    select = render.resolve_select(token.select, render.FOLDER_PROPERTIES, "mailFolder")
    end = token.end or mb.seq
    root = mb.msg_root()
    net = _net(mb.hierarchy_log, token.base, end)
    relevant = []
    for kind, serial in net:
        found = mb.folders[serial]
        if found is root or found.folder_class not in render.MAIL_FOLDER_CLASSES:
            continue
        if kind != "Delete" and (found.deleted or not mb.is_below(found, root)):
            continue
        relevant.append((kind, found))
    size = _page_size(prefs)
    page = relevant[token.offset : token.offset + size]
    done = token.offset + len(page)
    value = []
    for kind, found in page:
        if kind == "Delete" or found.deleted:
            value.append({"id": folder_rest_id(found), "@removed": {"reason": "deleted"}})
        else:
            value.append(render.folder(mb, found, select))
    if done < len(relevant):
        following = DeltaToken("f", mb.number, 0, token.base, end, done, token.select, None, token.generation)
        return _links({"@odata.context": context, "value": value}, link, following, True)
    following = DeltaToken("f", mb.number, 0, end, 0, 0, token.select, None, token.generation)
    return _links({"@odata.context": context, "value": value}, link, following, False)
