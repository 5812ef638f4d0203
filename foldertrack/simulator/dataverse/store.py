"""``sim.crm``: the in-memory Dataverse organization (rows, row versions, deletions for change tracking) and
the test API to seed records and read back what the CRM holds.

Rows are plain dicts keyed by column logical name; a lookup column holds ``(table, id)`` or None.
Every write bumps one organization-wide version counter: it is the row's ``versionnumber`` (and ETag)
and what delta tokens count from.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import threading
import uuid
from collections import Counter
from typing import Any

from foldertrack.simulator.dataverse.faults import DataverseFaults
from foldertrack.simulator.dataverse.metadata import (
    Column,
    Table,
    by_entity_set,
    fill_system_columns,
    load_tables,
)

Row = dict[str, Any]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Crm:
    """Thread-safe: every public method takes ``lock``. Metadata loads on first use, so an EWS-only
    simulator starts without the ``shared/dataverse`` files; a Dataverse request without them fails clearly."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rows: dict[str, dict[str, Row]] = {}
        self.tombstones: list[tuple[int, str, str]] = []  # (version, table, id)
        self.version = 1000
        self._tables: dict[str, Table] | None = None
        self._link_columns: dict[str, tuple[str, ...]] = {}
        self._children: dict[
            tuple[str, str, tuple[str, str]], dict[str, None]
        ] = {}  # (child, lookup, parent)
        self.faults = DataverseFaults()
        self.requests: Counter[str] = Counter()
        self.user_id = str(uuid.uuid4())
        self.business_unit_id = str(uuid.uuid4())
        self.organization_id = str(uuid.uuid4())

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def tables(self) -> dict[str, Table]:
        with self.lock:
            if self._tables is None:
                self._tables = copy.deepcopy(load_tables())  # per organization: add_table() changes it
            return self._tables

    def add_table(
        self, logical: str, entity_set: str, name_column: str = "name", max_length: int = 200
    ) -> Table:
        """A custom table (e.g. ``new_project``/``new_projects``) that emails can be regarding."""
        with self.lock:
            table = Table(logical, entity_set, f"{logical}id", primary_name=name_column)
            table.columns[name_column] = Column(name_column, "string", max_length)
            self.tables[logical] = fill_system_columns(table)
            self.tables["email"].navigations[f"regardingobjectid_{logical}_email"] = (
                "regardingobjectid",
                logical,
            )
            return table

    def table(self, logical: str) -> Table:
        return self.tables[logical]

    def table_for_set(self, entity_set: str) -> Table | None:
        return by_entity_set(self.tables).get(entity_set)

    # -- row primitives (callers hold the lock) ----------------------------------------------------
    def _bump(self, row: Row) -> None:
        self.version += 1
        row["versionnumber"] = self.version
        row["modifiedon"] = now_iso()

    def find(self, logical: str, row_id: str) -> Row | None:
        return self.rows.get(logical, {}).get(row_id)

    def _links(self, logical: str) -> tuple[str, ...]:
        """The lookup columns of ``logical`` that another table's collection follows (child → parent)."""
        if logical not in self._link_columns:
            self._link_columns[logical] = tuple(
                sorted(
                    {
                        lookup
                        for t in self.tables.values()
                        for child, lookup in t.collections.values()
                        if child == logical
                    }
                )
            )
        return self._link_columns[logical]

    def _index(self, logical: str, row: Row, add: bool) -> None:
        row_id = row[self.table(logical).primary_id]
        for column in self._links(logical):
            ref = row.get(column)
            if ref:
                bucket = self._children.setdefault((logical, column, tuple(ref)), {})
                if add:
                    bucket[row_id] = None
                else:
                    bucket.pop(row_id, None)

    def insert(self, logical: str, values: Row, row_id: str | None = None) -> str:
        table = self.table(logical)
        row_id = str(uuid.UUID(row_id)) if row_id else str(uuid.uuid4())
        row: Row = dict(values)
        row[table.primary_id] = row_id
        row.setdefault("createdon", now_iso())
        self._bump(row)
        self.rows.setdefault(logical, {})[row_id] = row
        self._index(logical, row, True)
        return row_id

    def update(self, logical: str, row_id: str, values: Row) -> Row:
        row = self.rows[logical][row_id]
        self._index(logical, row, False)
        row.update(values)
        self._index(logical, row, True)
        self._bump(row)
        return row

    def delete(self, logical: str, row_id: str) -> None:
        """Delete a row and (cascade) the rows whose lookup in one of its collections points at it."""
        table = self.table(logical)
        for navigation, (child_logical, _) in table.collections.items():
            for child in self.children(logical, row_id, navigation):
                self.delete(child_logical, child[self.table(child_logical).primary_id])
        self._index(logical, self.rows[logical][row_id], False)
        del self.rows[logical][row_id]
        self.version += 1
        self.tombstones.append((self.version, logical, row_id))

    def children(self, logical: str, row_id: str, navigation: str) -> list[Row]:
        child_logical, lookup = self.table(logical).collections[navigation]
        ids = self._children.get((child_logical, lookup, (logical, row_id)), {})
        rows = self.rows.get(child_logical, {})
        return [rows[i] for i in ids if i in rows]

    def value_of(self, table: Table, row: Row, name: str) -> Any:
        """A column's value as ``$filter`` sees it (``_x_value`` is the lookup's id; datetimes parsed)."""
        if name.startswith("_") and name.endswith("_value"):
            ref = row.get(name[1:-6])
            return ref[1] if ref else None
        value = row.get(name)
        column = table.columns.get(name)
        if column is not None and column.type == "datetime" and isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        return value

    def display_name(self, logical: str, row_id: str) -> str | None:
        row = self.find(logical, row_id)
        if row is None:
            return None
        column = self.table(logical).primary_name
        return str(row[column]) if column and row.get(column) is not None else None

    # -- seeding (the test API) -------------------------------------------------------------------
    def _add(self, logical: str, values: Row) -> str:
        table = self.table(logical)
        if "statuscode" in table.columns:
            values.setdefault("statecode", 0)
            values.setdefault("statuscode", table.default_status(values["statecode"]))
        with self.lock:
            return self.insert(
                logical, {k: v for k, v in values.items() if v is not None or k == "statuscode"}
            )

    def add_account(self, name: str, number: str | None = None, email: str | None = None) -> str:
        return self._add("account", {"name": name, "accountnumber": number, "emailaddress1": email})

    def add_contact(self, name: str, email: str | None = None, account: str | None = None) -> str:
        first, _, last = name.rpartition(" ")
        return self._add(
            "contact",
            {
                "firstname": first or None,
                "lastname": last,
                "fullname": name,
                "emailaddress1": email,
                "parentcustomerid": ("account", account) if account else None,
            },
        )

    def add_lead(self, name: str, email: str | None = None, company: str | None = None) -> str:
        first, _, last = name.rpartition(" ")
        return self._add(
            "lead",
            {
                "firstname": first or None,
                "lastname": last,
                "fullname": name,
                "emailaddress1": email,
                "companyname": company,
            },
        )

    def add_opportunity(self, name: str) -> str:
        return self._add("opportunity", {"name": name})

    def add_incident(self, title: str, number: str | None = None) -> str:
        return self._add("incident", {"title": title, "ticketnumber": number})

    def add_record(self, logical: str, **values: Any) -> str:
        """A row in any table (custom ones too), columns as given."""
        return self._add(logical, dict(values))

    def add_user(self, name: str, email: str) -> str:
        with self.lock:
            return self.insert("systemuser", {"fullname": name, "internalemailaddress": email})

    def update_record(self, logical: str, row_id: str, **values: Any) -> None:
        """Change a record as a CRM user would (bumps its version: delta links report it)."""
        with self.lock:
            if self.find(logical, row_id) is None:
                raise KeyError(f"{logical} {row_id} does not exist")
            self.update(logical, row_id, values)

    def delete_record(self, logical: str, row_id: str) -> None:
        with self.lock:
            if self.find(logical, row_id) is None:
                raise KeyError(f"{logical} {row_id} does not exist")
            self.delete(logical, row_id)

    # -- reading back -----------------------------------------------------------------------------
    def get(self, logical: str, row_id: str) -> Row | None:
        with self.lock:
            row = self.find(logical, row_id)
            return dict(row) if row is not None else None

    def records(self, logical: str) -> list[Row]:
        with self.lock:
            return [dict(r) for r in self.rows.get(logical, {}).values()]

    def emails(self) -> list[dict[str, Any]]:
        """Every email activity as a plain dict (see :meth:`email`), in creation order."""
        with self.lock:
            ids = list(self.rows.get("email", {}))
        return [e for e in (self.email(i) for i in ids) if e is not None]

    def email(self, activity_id: str) -> dict[str, Any] | None:
        """activityid, subject, description, messageid, directioncode, statecode, statuscode, senton,
        regarding ``(table, id)`` or None, regarding_name, parties ``[(mask, (table, id)) or (mask, address)]``,
        attachments ``[(filename, mimetype, size)]``, row (every column)."""
        with self.lock:
            row = self.find("email", activity_id)
            if row is None:
                return None
            parties = []
            for party in self.children("email", activity_id, "email_activity_parties"):
                ref = party.get("partyid")
                parties.append(
                    (party.get("participationtypemask"), tuple(ref) if ref else party.get("addressused"))
                )
            attachments = []
            for att in self.children("email", activity_id, "email_activity_mime_attachment"):
                attachments.append((att.get("filename"), att.get("mimetype"), att.get("filesize")))
            regarding = row.get("regardingobjectid")
            return {
                "activityid": activity_id,
                "subject": row.get("subject"),
                "description": row.get("description"),
                "messageid": row.get("messageid"),
                "directioncode": row.get("directioncode"),
                "statecode": row.get("statecode"),
                "statuscode": row.get("statuscode"),
                "senton": row.get("senton"),
                "regarding": tuple(regarding) if regarding else None,
                "regarding_name": self.display_name(*regarding) if regarding else None,
                "parties": parties,
                "attachments": attachments,
                "row": dict(row),
            }

    def attachment_content(self, attachment_id: str) -> bytes | None:
        with self.lock:
            row = self.find("activitymimeattachment", attachment_id)
        return base64.b64decode(row["body"]) if row and row.get("body") else None
