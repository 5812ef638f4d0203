"""Collection reads: ``$filter``/``$select``/``$expand``/``$orderby``/``$top``, paging with
``Prefer: odata.maxpagesize`` and ``@odata.nextLink``, change tracking (``Prefer: odata.track-changes``,
``@odata.deltaLink``, ``$deltatoken``) with deleted rows as ``$deletedEntity`` entries.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results
https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from foldertrack.simulator.dataverse import errors
from foldertrack.simulator.dataverse.metadata import Table
from foldertrack.simulator.dataverse.odata import Expand, Prefer, parse_expand, parse_filter, parse_select
from foldertrack.simulator.dataverse.store import Crm, Row

if TYPE_CHECKING:
    from foldertrack.simulator.dataverse.handlers import Request, Response

DEFAULT_PAGE_SIZE = 5000
_COOKIE = re.compile(r'pagenumber="(\d+)".*?deltaversion="(\d+)"', re.S)


def serialize(
    crm: Crm, table: Table, row: Row, select: list[str] | None, expand: list[Expand], annotations: str | None
) -> dict[str, Any]:
    """A row as the Web API returns it: ``@odata.etag``, columns (lookups as ``_x_value``), expansions."""
    out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber")}"'}
    names = select or [f"_{c.name}_value" if c.type == "lookup" else c.name for c in table.columns.values()]
    for name in [*names, table.primary_id]:
        if name.startswith("_") and name.endswith("_value"):
            ref = row.get(name[1:-6])
            out[name] = ref[1] if ref else None
            if ref and annotations:
                out[f"{name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = ref[0]
                out[f"{name}@OData.Community.Display.V1.FormattedValue"] = crm.display_name(*ref)
        else:
            out[name] = row.get(name)
    for item in expand:
        child_table = crm.table(table.collections[item.navigation][0])
        child_select = parse_select(item.select, child_table)
        out[item.navigation] = [
            serialize(crm, child_table, child, child_select, [], annotations)
            for child in crm.children(table.logical, row[table.primary_id], item.navigation)
        ]
    return out


def _token(version: int) -> str:
    return f"{version}!{dt.datetime.now(dt.UTC).strftime('%m/%d/%Y %H:%M:%S')}"


def _cookie(page: int, version: int) -> str:
    return f'<cookie pagenumber="{page}" pagingcookie="" istracking="False" deltaversion="{version}" />'


def _link(req: Request, table: Table, params: dict[str, str]) -> str:
    return f"{req.base}/{table.entity_set}?{urlencode(params, quote_via=quote, safe='$,')}"


def _context(req: Request, table: Table, select: list[str] | None, suffix: str = "") -> str:
    columns = f"({','.join(select)})" if select else ""
    return f"{req.base}/$metadata#{table.entity_set}{columns}{suffix}"


def _order(crm: Crm, table: Table, rows: list[Row], orderby: str | None) -> list[Row]:
    if not orderby:
        return rows
    for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
        name, _, direction = clause.partition(" ")
        name = name.lower()
        if parse_select(name, table) is None:
            continue
        present = [r for r in rows if crm.value_of(table, r, name) is not None]
        missing = [r for r in rows if crm.value_of(table, r, name) is None]
        present.sort(key=lambda r: crm.value_of(table, r, name), reverse=direction.strip().lower() == "desc")
        rows = missing + present if direction.strip().lower() != "desc" else present + missing
    return rows


def list_rows(crm: Crm, table: Table, req: Request, prefer: Prefer) -> Response:
    from foldertrack.simulator.dataverse.handlers import Response

    query = req.query
    tracking = prefer.track_changes or "$deltatoken" in query
    if tracking:
        for option in ("$filter", "$orderby", "$expand", "$top"):
            if option in query:
                raise errors.query_syntax(
                    f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
                )
    select = parse_select(query.get("$select"), table)
    expand = parse_expand(query.get("$expand"), table)
    predicate = (
        parse_filter(query["$filter"], table, lambda r, n: crm.value_of(table, r, n))
        if query.get("$filter")
        else None
    )
    try:
        top = int(query["$top"]) if "$top" in query else None
    except ValueError:
        raise errors.query_syntax(f"Invalid value '{query['$top']}' for $top.") from None
    page, snapshot = 1, None
    if "$skiptoken" in query:
        cookie = _COOKIE.search(query["$skiptoken"])
        if cookie is None:
            raise errors.query_syntax("The $skiptoken is not valid.")
        page, snapshot = int(cookie.group(1)), int(cookie.group(2))
    since = _since(query.get("$deltatoken"))
    with crm.lock:
        snapshot = snapshot if snapshot is not None else crm.version
        if since is None:
            rows = [r for r in crm.rows.get(table.logical, {}).values() if predicate is None or predicate(r)]
            rows = _order(crm, table, rows, query.get("$orderby"))
            if top is not None:
                rows = rows[:top]
            items: list[dict[str, Any]] = [
                serialize(crm, table, r, select, expand, prefer.annotations) for r in rows
            ]
        else:
            items = _changes(crm, table, req, select, since, snapshot, prefer.annotations)
    size = prefer.max_page_size or DEFAULT_PAGE_SIZE
    start = (page - 1) * size
    body: dict[str, Any] = {
        "@odata.context": _context(req, table, select, "/$delta" if since is not None else ""),
        "value": items[start : start + size],
    }
    applied = []
    if prefer.max_page_size:
        applied.append(f"odata.maxpagesize={prefer.max_page_size}")
    params = {k: v for k, v in query.items() if k != "$skiptoken"}
    if start + size < len(items):
        body["@odata.nextLink"] = _link(req, table, {**params, "$skiptoken": _cookie(page + 1, snapshot)})
    elif tracking:
        keep = {k: v for k, v in params.items() if k == "$select"}
        body["@odata.deltaLink"] = _link(req, table, {**keep, "$deltatoken": _token(snapshot)})
    if prefer.track_changes:
        applied.append("odata.track-changes")
    headers = {"Preference-Applied": ",".join(applied)} if applied else {}
    return Response(200, body, headers)


def _since(token: str | None) -> int | None:
    if token is None:
        return None
    version, _, _ = token.partition("!")
    if not version.isdigit():
        raise errors.query_syntax(f"The delta token '{token}' is not valid.")
    return int(version)


def _changes(
    crm: Crm,
    table: Table,
    req: Request,
    select: list[str] | None,
    since: int,
    until: int,
    annotations: str | None,
) -> list[dict[str, Any]]:
    """Rows created or changed after ``since`` (by version), then rows deleted after it."""
    changed = [
        r
        for r in crm.rows.get(table.logical, {}).values()
        if since < int(r.get("versionnumber") or 0) <= until
    ]
    changed.sort(key=lambda r: int(r.get("versionnumber") or 0))
    items = [serialize(crm, table, r, select, [], annotations) for r in changed]
    context = f"{req.base}/$metadata#{table.entity_set}/$deletedEntity"
    for version, logical, row_id in crm.tombstones:
        if logical == table.logical and since < version <= until:
            items.append({"@odata.context": context, "id": row_id, "reason": "deleted"})
    return items
