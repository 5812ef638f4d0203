"""The record directory's side of ``records sync``: applying CRM changes, and the delta link of each table.

Each page of changes commits on its own (upserts are idempotent, so a crash just repeats a page); the
delta link is saved only once every page of a run is applied, so the next run never skips a change.
Records that came from the CRM are listed in ``synced_records``: a full resync removes those the CRM no
longer has, and never touches records imported from CSV.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, exc, insert, select, update

from foldertrack.errors import DatabaseError
from foldertrack.state.csv_records import CsvRecord
from foldertrack.state.database import SQLITE_BEGIN_OPTION
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import records, records_sync, synced_records
from foldertrack.state.types import utcnow


@dataclass
class ApplyCounts:
    """What applying CRM rows did to the directory."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0

    def add(self, other: ApplyCounts) -> None:
        self.added += other.added
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.deleted += other.deleted


class SyncedRecords:
    """Writes CRM records into the directory (``records``, ``record_emails``) and keeps the cursors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.directory = RecordDirectory(engine)

    def _writing(self):
        options = {SQLITE_BEGIN_OPTION: "immediate"}  # the watcher may be writing: wait for the lock
        return self.engine.connect().execution_options(**options)

    def apply(self, record_type: str, rows: Iterable[CsvRecord], deleted: Iterable[str] = ()) -> ApplyCounts:
        """Upsert ``rows`` (all of ``record_type``) and remove the ``deleted`` ids, in one transaction."""
        rows = list(rows)
        counts = ApplyCounts()
        try:
            with self._writing() as conn, conn.begin():
                existing = self.directory._existing(conn, [(r.type, r.id) for r in rows])
                now = utcnow()
                for row in rows:
                    before = existing.get((row.type, row.id))
                    if before is None:
                        self.directory._insert(conn, row, now)
                        counts.added += 1
                    elif before == (row.name, row.number, frozenset(row.emails)):
                        counts.unchanged += 1
                    else:
                        self.directory._update(conn, row, before[2], now)
                        counts.changed += 1
                known = {
                    r.record_id
                    for r in conn.execute(
                        select(synced_records.c.record_id).where(
                            synced_records.c.record_type == record_type,
                            synced_records.c.record_id.in_([r.id for r in rows]),
                        )
                    )
                }
                fresh = [{"record_type": record_type, "record_id": r.id} for r in rows if r.id not in known]
                if fresh:
                    conn.execute(insert(synced_records), fresh)
                counts.deleted = self._delete(conn, record_type, list(deleted))
        except exc.DBAPIError as error:
            raise DatabaseError(f"records sync: {type(error.orig or error).__name__}: {error.orig}") from None
        return counts

    def remove_missing(self, record_type: str, seen: set[str]) -> int:
        """After a full sync: remove the CRM records of ``record_type`` the CRM did not return."""
        with self._writing() as conn, conn.begin():
            ids = [
                r.record_id
                for r in conn.execute(
                    select(synced_records.c.record_id).where(synced_records.c.record_type == record_type)
                )
                if r.record_id not in seen
            ]
            return self._delete(conn, record_type, ids)

    def _delete(self, conn, record_type: str, ids: list[str]) -> int:
        removed = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            conn.execute(
                delete(synced_records).where(
                    synced_records.c.record_type == record_type, synced_records.c.record_id.in_(chunk)
                )
            )
            result = conn.execute(
                delete(records).where(records.c.type == record_type, records.c.id.in_(chunk))
            )
            removed += result.rowcount or 0
        return removed

    # -- cursors -----------------------------------------------------------------------------------------

    def delta_link(self, record_type: str) -> str | None:
        with self.engine.connect() as conn:
            query = select(records_sync.c.delta_link).where(records_sync.c.record_type == record_type)
            return conn.execute(query).scalar_one_or_none()

    def save(self, record_type: str, delta_link: str | None) -> int:
        """Store the delta link the next sync continues from; returns the CRM records of that type."""
        with self._writing() as conn, conn.begin():
            count = len(
                conn.execute(
                    select(synced_records.c.record_id).where(synced_records.c.record_type == record_type)
                ).all()
            )
            values = {"delta_link": delta_link, "synced_at": utcnow(), "record_count": count}
            done = conn.execute(
                update(records_sync).where(records_sync.c.record_type == record_type).values(**values)
            )
            if not done.rowcount:
                conn.execute(insert(records_sync).values(record_type=record_type, **values))
        return count

    def forget(self, record_type: str) -> None:
        """Drop the delta link: the next sync of ``record_type`` is a full one (``records sync --full``)."""
        with self._writing() as conn, conn.begin():
            conn.execute(
                update(records_sync).where(records_sync.c.record_type == record_type).values(delta_link=None)
            )
