"""The Graph mail operations, one function per endpoint family; each returns ``(status, body, headers)``.

https://learn.microsoft.com/graph/api/resources/mail-api-overview
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from foldertrack.simulator.graph import delta, errors, render, translate
from foldertrack.simulator.graph.ids import folder_rest_id
from foldertrack.simulator.graph.query import Preferences, Query, message_filter, order_messages, parse_query
from foldertrack.simulator.model import EwsError, Mailbox

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService

DEFAULT_TOP = 10
MAX_TOP = 1000
LIST_OPTIONS = frozenset({"$select", "$top", "$skip", "$expand", "$orderby", "$count"})
MESSAGE_LIST_OPTIONS = LIST_OPTIONS | {"$filter"}
ITEM_OPTIONS = frozenset({"$select", "$expand"})
DELTA_OPTIONS = frozenset({"$select", "$skiptoken", "$deltatoken", "$top"})


@dataclass
class GraphRequest:
    method: str
    segments: list[str]  # after /v1.0/users/{user}/
    params: dict[str, str]
    prefs: Preferences
    body: Any
    base: str  # https://host:port/v1.0
    user: str
    claims: dict[str, Any] = field(default_factory=dict)


Result = tuple[int, Any, dict[str, str]]


def _page(items: list[Any], query: Query, request: GraphRequest, path: str) -> tuple[list[Any], str | None]:
    top = min(query.top or DEFAULT_TOP, MAX_TOP)
    page = items[query.skip : query.skip + top]
    if query.skip + top >= len(items):
        return page, None
    params = {k: v for k, v in request.params.items() if k.lower() != "$skip"}
    params["$skip"] = str(query.skip + top)
    return page, f"{request.base}/users/{request.user}/{path}?{urlencode(params)}"


def _collection(
    context: str, value: list[Any], next_link: str | None, count: int | None = None
) -> dict[str, Any]:
    """A collection page; ``count`` (``$count=true``): how many the whole collection holds."""
    out: dict[str, Any] = {"@odata.context": context}
    if count is not None:
        out["@odata.count"] = count
    out["value"] = value
    if next_link:
        out["@odata.nextLink"] = next_link
    return out


def folders(service: GraphService, mb: Mailbox, request: GraphRequest) -> Result:
    """``mailFolders``, ``mailFolders/{id}``, ``…/childFolders``, ``mailFolders/delta``."""
    segs = request.segments
    ctx = f"{request.base}/$metadata#users('{request.user}')/mailFolders"
    if len(segs) == 2 and segs[1].lower() == "delta":
        query = parse_query(request.params, DELTA_OPTIONS)
        link = f"{request.base}/users/{request.user}/mailFolders/delta"
        return 200, delta.folder_delta(service, mb, query, request.prefs, request.params, link, ctx), {}
    if len(segs) == 1:
        query = parse_query(request.params, LIST_OPTIONS)
        parent = mb.msg_root()
        path = "mailFolders"
    else:
        parent = service.folder(mb, segs[1])
        if len(segs) == 2:
            query = parse_query(request.params, ITEM_OPTIONS)
            select = render.resolve_select(query.select, render.FOLDER_PROPERTIES, "mailFolder")
            return 200, {"@odata.context": f"{ctx}/$entity", **render.folder(mb, parent, select)}, {}
        if len(segs) != 3 or segs[2].lower() != "childfolders":
            raise errors.GraphError(400, "BadRequest", f"Resource not found for the segment '{segs[-1]}'.")
        query = parse_query(request.params, LIST_OPTIONS)
        path = f"mailFolders/{segs[1]}/childFolders"
        ctx = f"{ctx}('{folder_rest_id(parent)}')/childFolders"
    select = render.resolve_select(query.select, render.FOLDER_PROPERTIES, "mailFolder")
    children = [render.folder(mb, child, select) for child in render.visible_children(mb, parent)]
    page, next_link = _page(children, query, request, path)
    return 200, _collection(ctx, page, next_link, len(children) if query.count else None), {}


EXTENDED = "singlevalueextendedproperties"


def _expand_attachments(query: Query) -> list[str] | bool | None:
    if not query.expand:
        return False
    unknown = set(query.expand) - {"attachments", EXTENDED}
    if unknown:
        raise errors.GraphError(
            400, "RequestBroker--ParseUri", f"Could not find a navigation property named '{unknown.pop()}'."
        )
    if "attachments" not in query.expand:
        return False
    return render.resolve_select(query.expand["attachments"], render.ATTACHMENT_PROPERTIES, "attachment")


def _expand_extended(query: Query) -> list[tuple[str, int]] | None:
    """The extended properties ``$expand=singleValueExtendedProperties($filter=id eq '…')`` asks for."""
    if not query.expand or EXTENDED not in query.expand:
        return None
    return render.extended_property_ids((query.expand_filter or {}).get(EXTENDED))


def _message_json(service: GraphService, item: Any, query: Query, request: GraphRequest) -> dict[str, Any]:
    select = render.resolve_select(query.select, render.MESSAGE_PROPERTIES, "message")
    out = render.message(
        item,
        service.ids,
        immutable=request.prefs.immutable_ids,
        select=select,
        body_type=request.prefs.body_type,
    )
    expand = _expand_attachments(query)
    if expand is not False:
        out["attachments"] = render.attachments(item, expand if isinstance(expand, list) else None)
    extended = _expand_extended(query)
    if extended is not None:
        values = render.extended_properties(item, extended)
        if values:  # none of them set: Graph leaves the navigation property out
            out["singleValueExtendedProperties"] = values
    return out


def folder_messages(service: GraphService, mb: Mailbox, request: GraphRequest) -> Result:
    """``mailFolders/{id}/messages`` (list), ``…/messages/delta``, ``…/messages/{id}``."""
    segs = request.segments
    folder = service.folder(mb, segs[1])
    if len(segs) == 4 and segs[3].lower() == "delta":
        query = parse_query(request.params, DELTA_OPTIONS)
        link = f"{request.base}/users/{request.user}/mailFolders/{segs[1]}/messages/delta"
        ctx = f"{request.base}/$metadata#Collection(message)"
        body = delta.message_delta(service, mb, folder, query, request.prefs, request.params, link, ctx)
        return 200, body, {}
    if len(segs) == 4:
        return message(service, mb, request, segs[3])
    query = parse_query(request.params, MESSAGE_LIST_OPTIONS)
    render.resolve_select(query.select, render.MESSAGE_PROPERTIES, "message")  # a bad name is a 400 even
    _expand_attachments(query)  # when the folder is empty
    _expand_extended(query)
    found = message_filter(query.filter, render.MESSAGE_PROPERTIES) if query.filter else None
    items = [mb.items[s] for s in folder.items]
    items = order_messages(
        [i for i in items if found is None or found.matches(i)],
        query.orderby,
        render.MESSAGE_PROPERTIES,
        found,
    )
    page_items, next_link = _page(items, query, request, f"mailFolders/{segs[1]}/messages")
    value = [_message_json(service, item, query, request) for item in page_items]
    ctx = f"{request.base}/$metadata#users('{request.user}')/mailFolders('{folder_rest_id(folder)}')/messages"
    return 200, _collection(ctx, value, next_link, len(items) if query.count else None), {}


def message(service: GraphService, mb: Mailbox, request: GraphRequest, ref: str) -> Result:
    item = service.item(mb, ref)
    if request.method == "PATCH":
        return _patch(service, mb, request, item)
    query = parse_query(request.params, ITEM_OPTIONS)
    ctx = f"{request.base}/$metadata#users('{request.user}')/messages/$entity"
    return 200, {"@odata.context": ctx, **_message_json(service, item, query, request)}, {}


def _patch(service: GraphService, mb: Mailbox, request: GraphRequest, item: Any) -> Result:
    body = request.body
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.", "ErrorInvalidRequest")
    unknown = set(body) - {"categories", "isRead"}
    if unknown:
        raise errors.bad_request(
            f"The simulator cannot update '{sorted(unknown)[0]}' of a message.", "ErrorInvalidProperty"
        )
    categories = body.get("categories")
    if categories is not None and (
        not isinstance(categories, list) or not all(isinstance(c, str) for c in categories)
    ):
        raise errors.bad_request("categories must be a collection of strings.", "ErrorInvalidProperty")
    is_read = body.get("isRead")
    if is_read is not None and not isinstance(is_read, bool):
        raise errors.bad_request("isRead must be a boolean.", "ErrorInvalidProperty")
    store = service.sim.store
    if mb.address.lower() in store.read_only:
        raise errors.GraphError(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    store.update_item(mb, item, is_read=is_read, categories=categories)
    out = render.message(item, service.ids, immutable=request.prefs.immutable_ids)
    return (
        200,
        {"@odata.context": f"{request.base}/$metadata#users('{request.user}')/messages/$entity", **out},
        {},
    )


def move(service: GraphService, mb: Mailbox, request: GraphRequest, ref: str) -> Result:
    """``POST messages/{id}/move`` ``{"destinationId": …}``: a new message (new id unless immutable)."""
    item = service.item(mb, ref)
    destination = request.body.get("destinationId") if isinstance(request.body, dict) else None
    if not isinstance(destination, str):
        raise errors.bad_request("destinationId is required.", "ErrorInvalidRequest")
    target = service.folder(mb, destination)
    try:
        moved = service.sim.store.move_item(mb, item, target)
    except EwsError as exc:
        raise errors.GraphError(400, exc.code, exc.text) from None
    out = render.message(moved, service.ids, immutable=request.prefs.immutable_ids)
    return (
        201,
        {"@odata.context": f"{request.base}/$metadata#users('{request.user}')/messages/$entity", **out},
        {},
    )


def attachments(service: GraphService, mb: Mailbox, request: GraphRequest, ref: str) -> Result:
    """``messages/{id}/attachments`` and ``…/attachments/{id}`` (with ``contentBytes``)."""
    item = service.item(mb, ref)
    segs = request.segments
    query = parse_query(request.params, ITEM_OPTIONS if len(segs) == 4 else LIST_OPTIONS)
    select = render.resolve_select(query.select, render.ATTACHMENT_PROPERTIES, "attachment")
    ctx = f"{request.base}/$metadata#users('{request.user}')/messages('{ref}')/attachments"
    if len(segs) == 3:
        return 200, {"@odata.context": ctx, "value": render.attachments(item, select)}, {}
    try:
        owner, index = service.sim.store.attachment_by_id(mb, segs[3].replace("-", "/").replace("_", "+"))
    except EwsError:
        raise errors.not_found() from None
    if owner is not item:
        raise errors.not_found()
    return 200, {"@odata.context": f"{ctx}/$entity", **render.attachment(item, index, select)}, {}


def user_route(service: GraphService, mb: Mailbox, request: GraphRequest) -> Result:
    segs = request.segments
    head = segs[0].lower() if segs else ""
    if head == "mailfolders":
        if len(segs) >= 3 and segs[2].lower() == "messages" and request.method in ("GET", "PATCH"):
            return folder_messages(service, mb, request)
        if request.method == "GET":
            return folders(service, mb, request)
    if head == "translateexchangeids" and len(segs) == 1 and request.method == "POST":
        ctx = f"{request.base}/$metadata#Collection(microsoft.graph.convertIdResult)"
        return 200, {"@odata.context": ctx, "value": translate.translate(service, mb, request.body)}, {}
    if head == "messages" and len(segs) >= 2:
        if len(segs) == 2 and request.method in ("GET", "PATCH"):
            return message(service, mb, request, segs[1])
        if len(segs) == 3 and segs[2].lower() == "move" and request.method == "POST":
            return move(service, mb, request, segs[1])
        if len(segs) in (3, 4) and segs[2].lower() == "attachments" and request.method == "GET":
            return attachments(service, mb, request, segs[1])
    raise errors.GraphError(
        400, "BadRequest", f"Unsupported request: {request.method} users/{{id}}/{'/'.join(segs)}"
    )
