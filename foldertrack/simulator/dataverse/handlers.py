"""The Dataverse Web API v9.2 operations on entity sets: query, retrieve, create, update/upsert, delete,
``$ref`` (dis)association, ``WhoAmI``.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-operations-web-api
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api

Completed (``statecode`` 1) emails: Dataverse lets the Web API update a closed email (the read-only email
form is the app's behaviour, and "Set Regarding" on a received email is an update of ``regardingobjectid``
on a Completed row, which server-side sync and the Dynamics 365 App for Outlook do routinely). We found no
Microsoft documentation of a platform rule refusing updates to closed emails, so the simulator accepts
them, including re-linking, clearing the regarding and replacing ``email_activity_parties``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from foldertrack.simulator.dataverse import errors
from foldertrack.simulator.dataverse.metadata import Table
from foldertrack.simulator.dataverse.odata import parse_expand, parse_prefer, parse_select
from foldertrack.simulator.dataverse.payload import Parsed, apply_state, parse_body, parse_reference
from foldertrack.simulator.dataverse.query import list_rows, serialize
from foldertrack.simulator.dataverse.store import Crm

_ENTITY = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*)(?:\(\{?([0-9a-fA-F-]{36})\}?\))?(?:/([A-Za-z_][A-Za-z0-9_]*)/\$ref)?$"
)


@dataclass
class Request:
    method: str
    path: str  # after /api/data/v9.2/
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    base: str  # https://host:port/api/data/v9.2
    prefer: list[str] = field(default_factory=list)


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def dispatch(crm: Crm, req: Request) -> Response:
    if req.path in ("", "/") and req.method == "GET":
        sets = sorted(t.entity_set for t in crm.tables.values())
        return Response(
            200,
            {
                "@odata.context": f"{req.base}/$metadata",
                "value": [{"name": s, "kind": "EntitySet", "url": s} for s in sets],
            },
        )
    if req.path == "WhoAmI":
        if req.method != "GET":
            raise errors.method_not_allowed(req.method)
        return Response(
            200,
            {
                "@odata.context": f"{req.base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": crm.business_unit_id,
                "UserId": crm.user_id,
                "OrganizationId": crm.organization_id,
            },
        )
    match = _ENTITY.match(req.path)
    table = crm.table_for_set(match.group(1)) if match else None
    if match is None or table is None:
        raise errors.resource_not_found(req.path.split("(")[0].split("/")[0])
    row_id = str(uuid.UUID(match.group(2))) if match.group(2) else None
    crm.requests[f"{req.method} {table.entity_set}{'(id)' if row_id else ''}"] += 1
    prefer = parse_prefer(req.prefer)
    if match.group(3):
        if row_id is None:
            raise errors.resource_not_found(req.path)
        return _reference(crm, table, row_id, match.group(3).lower(), req)
    if row_id is None:
        if req.method == "GET":
            return list_rows(crm, table, req, prefer)
        if req.method == "POST":
            return _create(crm, table, req, prefer, None)
        raise errors.method_not_allowed(req.method)
    if req.method == "GET":
        return _retrieve(crm, table, row_id, req)
    if req.method == "PATCH":
        return _patch(crm, table, row_id, req, prefer)
    if req.method == "DELETE":
        return _delete(crm, table, row_id, req)
    raise errors.method_not_allowed(req.method)


def _json(table: Table, req: Request) -> Any:
    try:
        return json.loads(req.body or b"{}")
    except ValueError as exc:
        raise errors.payload_error(table.entity_set, f"The request body is not valid JSON: {exc}") from None


def _entity_url(req: Request, table: Table, row_id: str) -> str:
    return f"{req.base}/{table.entity_set}({row_id})"


def _representation(crm: Crm, table: Table, row_id: str, req: Request, status: int) -> Response:
    select = parse_select(req.query.get("$select"), table)
    body = serialize(crm, table, crm.find(table.logical, row_id) or {}, select, [], None)
    body = {"@odata.context": f"{req.base}/$metadata#{table.entity_set}/$entity", **body}
    return Response(
        status,
        body,
        {"Preference-Applied": "return=representation", "OData-EntityId": _entity_url(req, table, row_id)},
    )


def _write(
    crm: Crm, table: Table, parsed: Parsed, row_id: str | None, existing: dict[str, Any] | None
) -> str:
    """Insert or update the row and replace deep-inserted children; the caller holds the lock."""
    values = dict(parsed.values)
    primary = values.pop(table.primary_id, None)
    row_id = row_id or primary or str(uuid.uuid4())
    apply_state(table, values, existing, row_id)
    if existing is None:
        row_id = crm.insert(table.logical, values, row_id)
    else:
        crm.update(table.logical, row_id, values)
    for navigation, children in parsed.children.items():
        child_logical, lookup = table.collections[navigation]
        if existing is not None:
            for old in crm.children(table.logical, row_id, navigation):
                crm.delete(child_logical, old[crm.table(child_logical).primary_id])
        for child in children:
            child_values = dict(child.values)
            child_values[lookup] = (table.logical, row_id)
            _fill_party(crm, child_logical, child_values)
            apply_state(crm.table(child_logical), child_values, None, row_id)
            crm.insert(
                child_logical, child_values, child_values.pop(crm.table(child_logical).primary_id, None)
            )
    if table.logical == "activitymimeattachment" and values.get("objectid"):
        _count_attachments(crm, *values["objectid"])
    if parsed.children.get("email_activity_mime_attachment") is not None:
        _count_attachments(crm, table.logical, row_id)
    return row_id


def _fill_party(crm: Crm, child_logical: str, values: dict[str, Any]) -> None:
    """A resolved party gets ``addressused`` from the record's address when the client sent none."""
    if child_logical != "activityparty" or values.get("addressused") or not values.get("partyid"):
        return
    record = crm.find(*values["partyid"]) or {}
    values["addressused"] = record.get("emailaddress1") or record.get("internalemailaddress")


def _count_attachments(crm: Crm, logical: str, row_id: str) -> None:
    if logical == "email" and crm.find("email", row_id) is not None:
        count = len(crm.children("email", row_id, "email_activity_mime_attachment"))
        crm.rows["email"][row_id]["attachmentcount"] = count


def _create(crm: Crm, table: Table, req: Request, prefer: Any, row_id: str | None) -> Response:
    body = _json(table, req)
    with crm.lock:
        parsed = parse_body(crm, table, body, create=True)
        wanted = parsed.values.get(table.primary_id)
        if wanted is not None and crm.find(table.logical, wanted) is not None:
            raise errors.duplicate()
        row_id = _write(crm, table, parsed, None, None)
        if prefer.representation:
            return _representation(crm, table, row_id, req, 201)
    return Response(204, None, {"OData-EntityId": _entity_url(req, table, row_id)})


def _retrieve(crm: Crm, table: Table, row_id: str, req: Request) -> Response:
    select = parse_select(req.query.get("$select"), table)
    expand = parse_expand(req.query.get("$expand"), table)
    prefer = parse_prefer(req.prefer)
    with crm.lock:
        row = crm.find(table.logical, row_id)
        if row is None:
            raise errors.not_found(table.logical, row_id)
        body = serialize(crm, table, row, select, expand, prefer.annotations)
    etag = body.get("@odata.etag", "")
    if req.headers.get("if-none-match") == etag and not expand and prefer.annotations is None:
        return Response(304, None, {"ETag": etag})  # conditional retrieval: unchanged since that ETag
    return Response(
        200, {"@odata.context": f"{req.base}/$metadata#{table.entity_set}/$entity", **body}, {"ETag": etag}
    )


def _check_if_match(
    crm: Crm, table: Table, row_id: str, header: str | None, row: dict[str, Any] | None
) -> None:
    if header is None:
        return
    if row is None:
        raise errors.not_found(table.logical, row_id)
    if header.strip() != "*" and header.strip() != f'W/"{row.get("versionnumber")}"':
        raise errors.etag_mismatch()


def _patch(crm: Crm, table: Table, row_id: str, req: Request, prefer: Any) -> Response:
    body = _json(table, req)
    with crm.lock:
        row = crm.find(table.logical, row_id)
        _check_if_match(crm, table, row_id, req.headers.get("if-match"), row)
        if req.headers.get("if-none-match", "").strip() == "*" and row is not None:
            raise errors.duplicate()
        parsed = parse_body(crm, table, body, create=row is None)
        parsed.values.pop(table.primary_id, None)
        _write(crm, table, parsed, row_id, row)
        if prefer.representation:
            return _representation(crm, table, row_id, req, 200 if row is not None else 201)
    return Response(204, None, {"OData-EntityId": _entity_url(req, table, row_id)})


def _delete(crm: Crm, table: Table, row_id: str, req: Request) -> Response:
    with crm.lock:
        row = crm.find(table.logical, row_id)
        if row is None:
            raise errors.not_found(table.logical, row_id)
        _check_if_match(crm, table, row_id, req.headers.get("if-match"), row)
        parent = row.get("objectid") if table.logical == "activitymimeattachment" else None
        crm.delete(table.logical, row_id)
        if parent:
            _count_attachments(crm, *parent)
    return Response(204)


def _reference(crm: Crm, table: Table, row_id: str, navigation: str, req: Request) -> Response:
    """``PUT``/``DELETE {set}({id})/{navigation}/$ref``: set or clear a single-valued lookup."""
    if navigation not in table.navigations:
        raise errors.resource_not_found(navigation)
    column, target = table.navigations[navigation]
    with crm.lock:
        row = crm.find(table.logical, row_id)
        if row is None:
            raise errors.not_found(table.logical, row_id)
        if req.method == "DELETE":
            if row.get(column) is not None and row[column][0] == target:
                crm.update(table.logical, row_id, {column: None})
            return Response(204)
        if req.method == "PUT":
            body = _json(table, req)
            ref = body.get("@odata.id") if isinstance(body, dict) else None
            crm.update(table.logical, row_id, {column: parse_reference(crm, table, ref, navigation, target)})
            return Response(204)
    raise errors.method_not_allowed(req.method)
