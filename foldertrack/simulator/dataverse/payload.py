"""A create/update body checked against the table's metadata and turned into column values.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/create-entity-web-api
(``@odata.bind`` for single-valued navigation properties, deep insert of collection-valued ones such as
``email_activity_parties``). Unknown properties, bad bindings, wrong types, over-long strings and choice
values outside the column's options are refused with Dataverse's error codes (see ``errors``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from foldertrack.simulator.dataverse import errors
from foldertrack.simulator.dataverse.metadata import Column, Table
from foldertrack.simulator.dataverse.store import Crm

EDM = {
    "string": "Edm.String",
    "choice": "Edm.Int32",
    "integer": "Edm.Int32",
    "boolean": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "number": "Edm.Decimal",
    "guid": "Edm.Guid",
    "id": "Edm.Guid",
}
_BIND = re.compile(r"^(?:.*/api/data/v\d+\.\d+)?/?([A-Za-z_][A-Za-z0-9_]*)\(\{?([0-9a-fA-F-]{36})\}?\)$")
SYSTEM_COLUMNS = {"createdon", "modifiedon", "versionnumber"}


@dataclass
class Parsed:
    """Column values (lookups as ``(table, id)`` or None) and deep-inserted children per collection."""

    values: dict[str, Any] = field(default_factory=dict)
    children: dict[str, list[Parsed]] = field(default_factory=dict)


def parse_reference(crm: Crm, table: Table, text: Any, navigation: str, target: str) -> tuple[str, str]:
    """``/accounts(<guid>)`` (relative or absolute) for ``navigation``: the target must exist."""
    match = _BIND.match(text) if isinstance(text, str) else None
    if match is None:
        raise errors.payload_error(
            table.entity_set,
            f"An error occurred while parsing the '@odata.bind' value '{text}' of '{navigation}': it is not "
            "a valid entity reference URL.",
        )
    entity_set, row_id = match.group(1), str(uuid.UUID(match.group(2)))
    target_table = crm.table(target)
    if entity_set not in (target_table.entity_set, "activitypointers"):
        raise errors.payload_error(
            table.entity_set,
            f"The entity set '{entity_set}' in the '@odata.bind' value of '{navigation}' does not match the type "
            f"'Microsoft.Dynamics.CRM.{target}' of the navigation property.",
        )
    if crm.find(target, row_id) is None:
        raise errors.not_found(target, row_id)
    return target, row_id


def check_value(table: Table, column: Column, value: Any) -> Any:
    """``value`` converted for storage; raises the Dataverse error a bad value gets."""
    if value is None:
        return None
    kind = column.type

    def bad() -> errors.DataverseError:
        return errors.payload_error(
            table.entity_set,
            f"Cannot convert the literal '{value}' to the expected type '{EDM.get(kind, 'Edm.String')}'.",
        )

    if kind == "string":
        if not isinstance(value, str):
            raise bad()
        if column.max_length is not None and len(value) > column.max_length:
            raise errors.string_too_long(column.name, table.logical, column.max_length)
        return value
    if kind in ("choice", "integer"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        if kind == "choice" and column.options and value not in column.options:
            raise errors.option_out_of_range(column.name, table.logical, value)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return value
    if kind == "datetime":
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise bad() from None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind in ("guid", "id"):
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise bad() from None
    raise bad()


def parse_body(crm: Crm, table: Table, body: Any, *, create: bool) -> Parsed:
    """Check every property of ``body`` (a JSON object) for ``table``; the caller holds ``crm.lock``."""
    if not isinstance(body, dict):
        raise errors.payload_error(table.entity_set, "The request body must be a JSON object.")
    parsed = Parsed()
    for key, value in body.items():
        name, _, annotation = key.partition("@")
        name = name.lower()
        if annotation:
            if annotation.lower() != "odata.bind":
                continue  # other instance annotations (@odata.type, @OData.Community…) are ignored
            if name not in table.navigations:
                raise errors.undeclared_navigation(table.entity_set, name)
            column, target = table.navigations[name]
            parsed.values[column] = (
                None if value is None else parse_reference(crm, table, value, name, target)
            )
            continue
        if name in table.collections:
            child_logical, lookup = table.collections[name]
            if not isinstance(value, list):
                raise errors.payload_error(
                    table.entity_set, f"A collection was expected for the navigation property '{name}'."
                )
            child_table = crm.table(child_logical)
            children = [parse_body(crm, child_table, item, create=True) for item in value]
            for child in children:
                child.values.pop(lookup, None)
            parsed.children[name] = children
            continue
        column_meta = table.columns.get(name)
        if name.startswith("_") and name.endswith("_value"):
            raise errors.payload_error(
                table.entity_set,
                f"CRM do not support direct update of Entity Reference properties, Use Navigation properties "
                f"instead. (property '{name}')",
            )
        if column_meta is None or column_meta.type == "lookup" or name in table.navigations:
            raise errors.unknown_property(table.entity_set, key, table.logical)
        if name in SYSTEM_COLUMNS:
            continue  # system-maintained: accepted and ignored, as Dataverse does
        if column_meta.type == "id" and not create:
            continue
        parsed.values[name] = check_value(table, column_meta, value)
    if table.logical == "activitymimeattachment" and "body" in parsed.values:
        parsed.values["filesize"] = _decoded_size(table, parsed.values["body"])
    return parsed


def _decoded_size(table: Table, body: str | None) -> int:
    if body is None:
        return 0
    try:
        return len(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError):
        raise errors.payload_error(
            table.entity_set, "The value of 'body' is not a valid base64 string."
        ) from None


def apply_state(table: Table, values: dict[str, Any], current: dict[str, Any] | None, row_id: str) -> None:
    """Make ``statecode``/``statuscode`` consistent: derive the missing one, refuse a mismatched pair."""
    if "statuscode" not in table.columns:
        return
    has_state, has_status = "statecode" in values, "statuscode" in values
    if has_status and values["statuscode"] is not None:
        state = table.state_for_status(values["statuscode"])
        wanted = values["statecode"] if has_state else None
        if wanted is not None and state is not None and wanted != state:
            raise errors.status_for_state(table.logical, values["statuscode"], wanted, row_id)
        if state is not None and not has_state:
            values["statecode"] = state
    elif has_state and values["statecode"] is not None:
        values["statuscode"] = table.default_status(values["statecode"])
    elif current is None:
        values["statecode"] = 0
        values["statuscode"] = table.default_status(0)
