"""The record directory: CRM records (type, id, name, number, e-mail addresses) that rules and parties
resolve against. Loaded from CSV with an all-or-nothing, idempotent upsert."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection, Engine, and_, delete, exc, insert, or_, select, tuple_, update

from foldertrack.errors import DatabaseError
from foldertrack.model import RecordRef
from foldertrack.state.csv_records import CsvRecord, read_records_csv
from foldertrack.state.database import SQLITE_BEGIN_OPTION
from foldertrack.state.schema import record_emails, records
from foldertrack.state.types import utcnow

LookupBy = Literal["name", "number", "name_or_number"]

#: When an address belongs to several records, the first type here that has one wins.
ADDRESS_PREFERENCE: tuple[str, ...] = ("contact", "account", "lead", "opportunity", "incident")


@dataclass(frozen=True)
class ImportReport:
    """What ``import_csv`` did; ``unchanged`` rows were already exactly as in the file."""

    path: str
    created: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclass(frozen=True)
class RecordLookup:
    """The result of a name/number lookup: ``record`` is set only for exactly one match."""

    matches: tuple[RecordRef, ...]

    @property
    def record(self) -> RecordRef | None:
        return self.matches[0] if len(self.matches) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.matches) > 1


@dataclass(frozen=True)
class DirectoryEntry:
    """One record with its addresses, for listings."""

    ref: RecordRef
    number: str | None
    emails: tuple[str, ...]


def fold(text: str) -> str:
    """The case-insensitive form names and numbers are matched on."""
    return " ".join(text.split()).casefold()


class RecordDirectory:
    """Reads and loads the ``records``/``record_emails`` tables. Methods take an optional ``conn`` so a
    caller can look records up inside its own transaction (on SQLite a second connection could wait on it)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # --- loading ---------------------------------------------------------------------------------------

    def import_csv(self, path: str | Path) -> ImportReport:
        """Validate the whole file, then upsert every row in one transaction (nothing when a row is bad).

        Raises RecordImportError listing every bad row as ``FILE:LINE: message``. Records missing from the
        file are kept; a re-import updates names, numbers and replaces each listed record's addresses.
        """
        rows = read_records_csv(path)
        try:
            return self._upsert(str(path), rows)
        except exc.DBAPIError as error:
            raise DatabaseError(
                f"importing {path} failed: {type(error.orig or error).__name__}: {error.orig}"
            ) from None

    def _upsert(self, path: str, rows: list[CsvRecord]) -> ImportReport:
        created = updated = unchanged = 0
        options = {SQLITE_BEGIN_OPTION: "immediate"}  # a watcher may be writing: wait for the lock
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            existing = self._existing(conn, [(r.type, r.id) for r in rows])
            now = utcnow()
            for row in rows:
                before = existing.get((row.type, row.id))
                if before is None:
                    self._insert(conn, row, now)
                    created += 1
                elif before == (row.name, row.number, frozenset(row.emails)):
                    unchanged += 1
                else:
                    self._update(conn, row, before[2], now)
                    updated += 1
        return ImportReport(path, created, updated, unchanged)

    def _existing(
        self, conn: Connection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, str | None, frozenset[str]]]:
        found: dict[tuple[str, str], tuple[str, str | None, set[str]]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            key_filter = tuple_(records.c.type, records.c.id).in_(chunk)
            for r in conn.execute(
                select(records.c.type, records.c.id, records.c.name, records.c.number).where(key_filter)
            ):
                found[(r.type, r.id)] = (r.name, r.number, set())
            email_filter = tuple_(record_emails.c.record_type, record_emails.c.record_id).in_(chunk)
            for e in conn.execute(select(record_emails).where(email_filter)):
                found[(e.record_type, e.record_id)][2].add(e.address)
        return {k: (name, number, frozenset(emails)) for k, (name, number, emails) in found.items()}

    def _insert(self, conn: Connection, row: CsvRecord, now: datetime) -> None:
        conn.execute(insert(records).values(**_record_values(row), created_at=now, updated_at=now))
        if row.emails:
            conn.execute(
                insert(record_emails),
                [{"address": a, "record_type": row.type, "record_id": row.id} for a in row.emails],
            )

    def _update(self, conn: Connection, row: CsvRecord, old_emails: frozenset[str], now: datetime) -> None:
        key = and_(records.c.type == row.type, records.c.id == row.id)
        conn.execute(update(records).where(key).values(**_record_values(row), updated_at=now))
        gone = old_emails - set(row.emails)
        if gone:
            conn.execute(
                delete(record_emails).where(
                    record_emails.c.record_type == row.type,
                    record_emails.c.record_id == row.id,
                    record_emails.c.address.in_(sorted(gone)),
                )
            )
        new = [a for a in row.emails if a not in old_emails]
        if new:
            conn.execute(
                insert(record_emails),
                [{"address": a, "record_type": row.type, "record_id": row.id} for a in new],
            )

    # --- lookups ---------------------------------------------------------------------------------------

    def lookup(
        self, record_type: str | None, text: str, by: LookupBy = "name", conn: Connection | None = None
    ) -> RecordLookup:
        """All records whose name (case-insensitive) and/or number equals ``text``, optionally of one type."""
        folded = fold(text)
        conditions = []
        if by in ("name", "name_or_number"):
            conditions.append(records.c.name_folded == folded)
        if by in ("number", "name_or_number"):
            conditions.append(records.c.number_folded == folded)
        if not conditions:
            raise ValueError(f"by must be 'name', 'number' or 'name_or_number', not {by!r}")
        query = select(records.c.type, records.c.id, records.c.name).where(or_(*conditions))
        if record_type is not None:
            query = query.where(records.c.type == record_type)
        query = query.order_by(records.c.type, records.c.id)
        with _using(self.engine, conn) as c:
            return RecordLookup(tuple(RecordRef(r.type, r.id, r.name) for r in c.execute(query)))

    def find(
        self, record_type: str | None, text: str, by: LookupBy = "name", conn: Connection | None = None
    ) -> RecordRef | None:
        """The one record matching ``text``; None when there is none or several (use ``lookup`` to tell)."""
        return self.lookup(record_type, text, by, conn).record

    def by_address(self, address: str, conn: Connection | None = None) -> RecordRef | None:
        """The record an e-mail address belongs to (contact, then account, then lead); None if unknown or
        if the preferred type has several records with that address."""
        return self.by_addresses([address], conn).get(address.strip().lower())

    def by_addresses(self, addresses: Iterable[str], conn: Connection | None = None) -> dict[str, RecordRef]:
        """``by_address`` for many addresses in one query; keys are the lower-cased addresses found."""
        wanted = sorted({a.strip().lower() for a in addresses if a and a.strip()})
        if not wanted:
            return {}
        query = (
            select(record_emails.c.address, records.c.type, records.c.id, records.c.name)
            .join(
                records,
                and_(
                    records.c.type == record_emails.c.record_type, records.c.id == record_emails.c.record_id
                ),
            )
            .where(record_emails.c.address.in_(wanted))
        )
        candidates: dict[str, dict[str, list[RecordRef]]] = {}
        with _using(self.engine, conn) as c:
            for r in c.execute(query):
                candidates.setdefault(r.address, {}).setdefault(r.type, []).append(
                    RecordRef(r.type, r.id, r.name)
                )
        result: dict[str, RecordRef] = {}
        for address, by_type in candidates.items():
            for kind in ADDRESS_PREFERENCE:
                refs = by_type.get(kind)
                if refs:
                    if len(refs) == 1:
                        result[address] = refs[0]
                    break
        return result

    def get(self, ref: RecordRef, conn: Connection | None = None) -> RecordRef | None:
        """``ref`` with its name filled in, or None when the directory does not have it."""
        query = select(records.c.name).where(records.c.type == ref.type, records.c.id == ref.id)
        with _using(self.engine, conn) as c:
            name = c.execute(query).scalar_one_or_none()
        return None if name is None else RecordRef(ref.type, ref.id, name)

    def list(self, record_type: str | None = None) -> list[DirectoryEntry]:
        """Every record (optionally of one type) with its addresses, ordered by type and name."""
        query = select(records.c.type, records.c.id, records.c.name, records.c.number)
        if record_type is not None:
            query = query.where(records.c.type == record_type)
        emails: dict[tuple[str, str], list[str]] = {}
        with self.engine.connect() as c:
            rows = c.execute(query.order_by(records.c.type, records.c.name_folded, records.c.id)).all()
            email_query = select(record_emails).order_by(record_emails.c.address)
            if record_type is not None:
                email_query = email_query.where(record_emails.c.record_type == record_type)
            for e in c.execute(email_query):
                emails.setdefault((e.record_type, e.record_id), []).append(e.address)
        return [
            DirectoryEntry(RecordRef(r.type, r.id, r.name), r.number, tuple(emails.get((r.type, r.id), ())))
            for r in rows
        ]


def _record_values(row: CsvRecord) -> dict[str, str | None]:
    return {
        "type": row.type,
        "id": row.id,
        "name": row.name,
        "number": row.number,
        "name_folded": fold(row.name),
        "number_folded": fold(row.number) if row.number else None,
    }


@contextmanager
def _using(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """The caller's connection as it is, or a fresh one that is closed afterwards."""
    if conn is not None:
        yield conn
        return
    with engine.connect() as own:
        yield own
