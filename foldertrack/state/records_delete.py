"""Removing records from the record directory (``foldertrack records delete``): all or nothing.

Addresses go with their record (``record_emails`` cascades). Activities that regard a deleted record keep
their regarding: it names the CRM record, which the directory only mirrors.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, and_, delete, select, tuple_

from foldertrack.errors import FoldertrackError
from foldertrack.model import RecordRef
from foldertrack.state.database import SQLITE_BEGIN_OPTION
from foldertrack.state.schema import record_emails, records


class UnknownRecordsError(FoldertrackError):
    """Some records to delete are not in the directory; nothing was deleted."""

    def __init__(self, missing: Sequence[RecordRef]):
        self.missing = list(missing)
        super().__init__(
            "not in the record directory (nothing deleted): " + ", ".join(str(r) for r in self.missing)
        )


def delete_records(engine: Engine, refs: Sequence[RecordRef], *, dry_run: bool = False) -> list[RecordRef]:
    """Delete exactly these records (with their addresses) in one transaction; returns them with names.

    Raises UnknownRecordsError, deleting nothing, when any of them is not in the directory."""
    wanted = list(dict.fromkeys(refs))
    if not wanted:
        return []
    keys = [(r.type, r.id) for r in wanted]
    options = {SQLITE_BEGIN_OPTION: "immediate"}  # a watcher or an import may be writing: wait
    with engine.connect().execution_options(**options) as conn, conn.begin():
        found: dict[tuple[str, str], str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = select(records.c.type, records.c.id, records.c.name).where(
                tuple_(records.c.type, records.c.id).in_(chunk)
            )
            found.update({(r.type, r.id): r.name for r in conn.execute(query)})
        missing = [r for r in wanted if (r.type, r.id) not in found]
        if missing:
            raise UnknownRecordsError(missing)
        if not dry_run:
            for ref in wanted:
                conn.execute(
                    delete(record_emails).where(
                        record_emails.c.record_type == ref.type, record_emails.c.record_id == ref.id
                    )
                )
                conn.execute(delete(records).where(and_(records.c.type == ref.type, records.c.id == ref.id)))
    return [RecordRef(r.type, r.id, found[(r.type, r.id)]) for r in wanted]
