"""Table definitions the simulated Dataverse enforces: column names, types, max lengths, choice values.

Read from the Common Data Model files in ``<repo>/../shared/dataverse/`` (or ``$FOLDERTRACK_SHARED/dataverse``):
every attribute object there has ``sourceName`` (the Web API logical name), ``dataType``, ``maximumLength``
and, for choices, ``constantValues`` rows ``[language, label, value, order(, correlated state)]``.
Tables not in that set (activitymimeattachment, opportunity, incident, systemuser) get the few columns
the sink and the tests use, per the same model. Web API navigation properties (``regardingobjectid_account_email``,
``partyid_contact``, ``objectid_email``) are not in the CDM files; they are declared here.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-types-operations
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MetadataMissing(RuntimeError):
    """The CDM files are not where they should be: the simulated Dataverse cannot enforce real metadata."""


STRING_TYPES = {"string", "name", "email", "firstName", "lastName", "fullName", "entityName", "url", "phone"}
TYPE_MAP = {
    "listLookup": "choice",
    "listLookupCorrelated": "choice",
    "boolean": "boolean",
    "dateTime": "datetime",
    "integer": "integer",
    "bigInteger": "integer",
    "decimal": "number",
    "double": "number",
    "guid": "guid",
    "entityId": "lookup",
}
REGARDING_TARGETS = ("account", "contact", "lead", "opportunity", "incident")
PARTY_TARGETS = ("account", "contact", "lead", "systemuser")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # string, choice, boolean, datetime, integer, number, guid, lookup, id
    max_length: int | None = None
    options: tuple[int, ...] = ()
    state_of: tuple[tuple[int, int], ...] = ()  # statuscode -> correlated statecode


@dataclass
class Table:
    """One Dataverse table as the Web API sees it."""

    logical: str
    entity_set: str
    primary_id: str
    columns: dict[str, Column] = field(default_factory=dict)
    navigations: dict[str, tuple[str, str]] = field(default_factory=dict)  # nav -> (lookup column, target)
    collections: dict[str, tuple[str, str]] = field(default_factory=dict)  # nav -> (child table, its lookup)
    primary_name: str | None = None

    @property
    def odata_type(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical}"

    def default_status(self, state: int) -> int | None:
        status = self.columns.get("statuscode")
        if status is None:
            return None
        for code, correlated in status.state_of:
            if correlated == state:
                return code
        return None

    def state_for_status(self, status: int) -> int | None:
        column = self.columns.get("statuscode")
        return dict(column.state_of).get(status) if column is not None else None


def shared_dir() -> Path:
    env = os.environ.get("FOLDERTRACK_SHARED")
    if env:
        return Path(env) / "dataverse"
    return Path(__file__).resolve().parents[4] / "shared" / "dataverse"


def _attributes(node: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if "sourceName" in node and "dataType" in node and "entityName" not in node:
            out.append(node)
            return
        for value in node.values():
            _attributes(value, out)
    elif isinstance(node, list):
        for value in node:
            _attributes(value, out)


def _option_rows(node: Any, out: list[list[str]]) -> None:
    if isinstance(node, dict):
        rows = node.get("constantValues")
        if isinstance(rows, list):
            out.extend(
                r for r in rows if isinstance(r, list) and len(r) >= 4 and str(r[2]).lstrip("-").isdigit()
            )
        for value in node.values():
            _option_rows(value, out)
    elif isinstance(node, list):
        for value in node:
            _option_rows(value, out)


def _column(attr: dict[str, Any]) -> Column:
    data_type = attr["dataType"]
    ref = data_type if isinstance(data_type, str) else data_type.get("dataTypeReference", "")
    name = attr["sourceName"].lower()
    kind = "string" if ref in STRING_TYPES else TYPE_MAP.get(ref, "string")
    if kind != "choice":
        return Column(name, kind, attr.get("maximumLength"))
    rows: list[list[str]] = []
    _option_rows(attr, rows)
    options = tuple(sorted({int(r[2]) for r in rows}))
    state_of = tuple(dict.fromkeys((int(r[2]), int(r[4])) for r in rows if len(r) >= 5))
    return Column(name, "choice", None, options, state_of)


#: The columns this module extracts from each CDM file, shipped in the package so the simulator (and
#: ``foldertrack demo``) works without ``../shared``; ``tests/simulator/test_dataverse_snapshot.py`` checks it
#: against the CDM files whenever they are there. Regenerate: ``python -m foldertrack.simulator.dataverse.metadata``.
SNAPSHOT = Path(__file__).with_name("columns.json")


def _extract(path: Path) -> dict[str, Column]:
    columns: dict[str, Column] = {}
    found: list[dict[str, Any]] = []
    _attributes(json.loads(path.read_text(encoding="utf-8")), found)
    for attr in found:
        column = _column(attr)
        columns.setdefault(column.name, column)
    return columns


@functools.lru_cache(maxsize=1)
def _snapshot() -> dict[str, list[list[Any]]]:
    try:
        return json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _from_snapshot(name: str) -> dict[str, Column] | None:
    rows = _snapshot().get(name)
    if rows is None:
        return None
    return {r[0]: Column(r[0], r[1], r[2], tuple(r[3]), tuple((a, b) for a, b in r[4])) for r in rows}


def _load_columns(directory: Path, *files: str) -> dict[str, Column]:
    """The columns of ``files`` from the CDM folder, else from the packaged snapshot of the same files."""
    columns: dict[str, Column] = {}
    for name in files:
        path = directory / name
        extracted = _extract(path) if path.is_file() else _from_snapshot(name)
        if extracted is None:
            raise MetadataMissing(
                f"Dataverse metadata file {path} not found and no packaged snapshot of it (set "
                "FOLDERTRACK_SHARED to the folder holding dataverse/*.cdm.json): the Dataverse simulator "
                "enforces the real column metadata"
            )
        for column in extracted.values():
            columns.setdefault(column.name, column)
    return columns


def write_snapshot(directory: Path | None = None) -> Path:
    """Extract every CDM file the simulator reads into :data:`SNAPSHOT` (sorted, stable)."""
    directory = directory or shared_dir()
    data = {
        path.name: [
            [c.name, c.type, c.max_length, list(c.options), [list(p) for p in c.state_of]]
            for c in sorted(_extract(path).values(), key=lambda c: c.name)
        ]
        for path in sorted(directory.glob("*.cdm.json"))
    }
    SNAPSHOT.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    return SNAPSHOT


def _strings(**lengths: int) -> dict[str, Column]:
    return {name: Column(name, "string", length) for name, length in lengths.items()}


def _state(states: tuple[int, ...], statuses: tuple[tuple[int, int], ...]) -> dict[str, Column]:
    return {
        "statecode": Column("statecode", "choice", None, states),
        "statuscode": Column("statuscode", "choice", None, tuple(s for s, _ in statuses), statuses),
    }


def fill_system_columns(table: Table) -> Table:
    """createdon, modifiedon, versionnumber and the primary key, which every table has."""
    for name in ("createdon", "modifiedon"):
        table.columns.setdefault(name, Column(name, "datetime"))
    table.columns.setdefault("versionnumber", Column("versionnumber", "integer"))
    table.columns[table.primary_id] = Column(table.primary_id, "id")
    return table


@functools.lru_cache(maxsize=4)
def load_tables(directory: Path | None = None) -> dict[str, Table]:
    """Every table by logical name; raises :class:`MetadataMissing` when the CDM files are absent."""
    directory = directory or shared_dir()
    email = Table(
        "email", "emails", "activityid", _load_columns(directory, "Email.resolved.cdm.json", "Email.cdm.json")
    )
    for target in REGARDING_TARGETS:
        email.navigations[f"regardingobjectid_{target}_email"] = ("regardingobjectid", target)
    email.collections["email_activity_parties"] = ("activityparty", "activityid")
    email.collections["email_activity_mime_attachment"] = ("activitymimeattachment", "objectid")
    party = Table(
        "activityparty",
        "activityparties",
        "activitypartyid",
        _load_columns(directory, "ActivityParty.resolved.cdm.json", "ActivityParty.cdm.json"),
    )
    for target in PARTY_TARGETS:
        party.navigations[f"partyid_{target}"] = ("partyid", target)
    party.navigations["activityid_email"] = ("activityid", "email")
    attachment = Table(
        "activitymimeattachment",
        "activitymimeattachments",
        "activitymimeattachmentid",
        {
            **_strings(filename=255, mimetype=256, subject=2000, body=1073741823, objecttypecode=64),
            "filesize": Column("filesize", "integer"),
            "attachmentnumber": Column("attachmentnumber", "integer"),
            "objectid": Column("objectid", "lookup"),
        },
    )
    attachment.navigations["objectid_email"] = ("objectid", "email")
    attachment.navigations["objectid_activitypointer"] = ("objectid", "email")
    account = Table("account", "accounts", "accountid", _load_columns(directory, "Account.cdm.json"))
    contact = Table("contact", "contacts", "contactid", _load_columns(directory, "Contact.cdm.json"))
    contact.navigations["parentcustomerid_account"] = ("parentcustomerid", "account")
    contact.columns.setdefault("parentcustomerid", Column("parentcustomerid", "lookup"))
    lead = Table("lead", "leads", "leadid", _load_columns(directory, "Lead.cdm.json"))
    opportunity = Table(
        "opportunity",
        "opportunities",
        "opportunityid",
        {
            **_strings(name=300, description=2000),
            **_state((0, 1, 2), ((1, 0), (2, 0), (3, 1), (4, 2), (5, 2))),
        },
    )
    incident = Table(
        "incident",
        "incidents",
        "incidentid",
        {
            **_strings(title=200, ticketnumber=100, description=2000),
            **_state((0, 1, 2), ((1, 0), (5, 1), (6, 2))),
        },
    )
    user = Table(
        "systemuser",
        "systemusers",
        "systemuserid",
        _strings(fullname=200, internalemailaddress=100, firstname=64, lastname=64),
    )
    tables = [email, party, attachment, account, contact, lead, opportunity, incident, user]
    names = ("subject", None, "filename", "name", "fullname", "fullname", "name", "title", "fullname")
    for table, name in zip(tables, names, strict=True):
        table.primary_name = name
    return {t.logical: fill_system_columns(t) for t in tables}


def by_entity_set(tables: dict[str, Table]) -> dict[str, Table]:
    return {t.entity_set: t for t in tables.values()}


if __name__ == "__main__":  # regenerate the packaged snapshot from ../shared/dataverse
    print(write_snapshot())
