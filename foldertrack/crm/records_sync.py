"""``records sync``: accounts, contacts and leads from Dataverse into the record directory.

The first run reads each table whole, page by page (``Prefer: odata.maxpagesize``, ``@odata.nextLink``),
with change tracking on (``Prefer: odata.track-changes``); its last page carries an ``@odata.deltaLink``,
stored in the state database. Later runs follow that link and get only what changed: new and changed rows,
and ``$deletedEntity`` entries for deleted ones. A delta link Dataverse no longer accepts (expired, or
change tracking switched off) falls back to a full read, after which CRM records it did not return are
removed. A synced record is in the directory at once, for pattern rules and party resolution alike.

Reference: https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from foldertrack.crm.client import DEFAULT_PAGE_SIZE, DataverseClient
from foldertrack.errors import PermanentSinkError
from foldertrack.state.csv_records import _EMAIL, CsvRecord
from foldertrack.state.records_sync import ApplyCounts, SyncedRecords
from foldertrack.state.schema import MAILBOX_LEN, NAME_LEN, RECORD_ID_LEN

log = logging.getLogger("foldertrack.crm.records")

_EMAILS = ("emailaddress1", "emailaddress2", "emailaddress3")


@dataclass(frozen=True)
class RecordSource:
    """One CRM table the directory mirrors: where it is and which columns make name and number."""

    type: str
    entity_set: str
    id_column: str
    name_columns: tuple[str, ...]  # first non-empty one is the name
    number_column: str | None = None

    def query(self) -> str:
        columns = (self.id_column, *self.name_columns, *((self.number_column,) if self.number_column else ()))
        return f"{self.entity_set}?$select={','.join(dict.fromkeys((*columns, *_EMAILS)))}"


SOURCES: dict[str, RecordSource] = {
    "account": RecordSource("account", "accounts", "accountid", ("name",), "accountnumber"),
    "contact": RecordSource("contact", "contacts", "contactid", ("fullname", "lastname", "firstname")),
    "lead": RecordSource("lead", "leads", "leadid", ("fullname", "companyname", "subject")),
}


@dataclass
class TypeReport:
    """One table's sync: ``mode`` is ``full`` or ``delta``; ``total`` the CRM records of that type now."""

    type: str
    mode: str = "full"
    pages: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    total: int = 0

    def take(self, counts: ApplyCounts) -> None:
        self.added += counts.added
        self.changed += counts.changed
        self.unchanged += counts.unchanged
        self.deleted += counts.deleted


@dataclass
class SyncReport:
    types: list[TypeReport] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(t.added or t.changed or t.deleted for t in self.types)

    def as_dict(self) -> dict[str, Any]:
        return {"types": [asdict(t) for t in self.types]}


Progress = Callable[[TypeReport], None]


class RecordsSyncer:
    """Syncs the directory from Dataverse; ``sync()`` is what ``records sync`` and the ``run`` timer call."""

    def __init__(
        self, client: DataverseClient, engine: Engine, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self.client = client
        self.store = SyncedRecords(engine)
        self.page_size = page_size

    def sync(
        self, types: tuple[str, ...] = tuple(SOURCES), *, full: bool = False, progress: Progress | None = None
    ) -> SyncReport:
        report = SyncReport()
        for record_type in types:
            report.types.append(self.sync_type(SOURCES[record_type], full=full, progress=progress))
        return report

    def sync_type(
        self, source: RecordSource, *, full: bool = False, progress: Progress | None = None
    ) -> TypeReport:
        link = None if full else self.store.delta_link(source.type)
        if link:
            try:
                return self._run(source, link, "delta", progress)
            except PermanentSinkError as error:  # expired token, change tracking switched off…
                log.warning(
                    "records sync: %ss: delta link refused (%s); reading the table again", source.type, error
                )
        try:
            return self._run(source, source.query(), "full", progress)
        except PermanentSinkError as error:  # change tracking not enabled for the table
            log.warning(
                "records sync: %ss: change tracking refused (%s); reading without it", source.type, error
            )
            return self._run(source, source.query(), "full", progress, track_changes=False)

    def _run(
        self,
        source: RecordSource,
        link: str,
        mode: str,
        progress: Progress | None,
        *,
        track_changes: bool = True,
    ) -> TypeReport:
        report = TypeReport(source.type, mode)
        seen: set[str] = set()
        delta_link = None
        pages = self.client.pages(link, page_size=self.page_size, track_changes=track_changes)
        for page in pages:
            rows: list[CsvRecord] = []
            deleted: list[str] = []
            for raw in page.rows:
                if _is_deleted(raw):
                    if raw.get("id"):
                        deleted.append(str(raw["id"]).lower())
                    continue
                record = to_record(source, raw)
                if record is None:
                    report.skipped += 1
                    continue
                rows.append(record)
                seen.add(record.id)
            report.take(self.store.apply(source.type, rows, deleted))
            report.pages += 1
            delta_link = page.delta_link or delta_link
            if progress is not None:
                progress(report)
        if mode == "full":
            report.deleted += self.store.remove_missing(source.type, seen)
        report.total = self.store.save(source.type, delta_link)
        if delta_link is None:
            log.warning(
                "records sync: %ss: no delta link (change tracking off?): next sync reads it all", source.type
            )
        return report


def _is_deleted(raw: dict[str, Any]) -> bool:
    return "$deletedEntity" in str(raw.get("@odata.context", "")) or ("reason" in raw and "id" in raw)


def to_record(source: RecordSource, raw: dict[str, Any]) -> CsvRecord | None:
    """A CRM row as a directory record; None (logged) when it has no usable id."""
    record_id = str(raw.get(source.id_column) or "").lower()
    if not record_id or len(record_id) > RECORD_ID_LEN:
        log.warning("records sync: %s row without a usable %s skipped", source.type, source.id_column)
        return None
    name = next((" ".join(str(raw[c]).split()) for c in source.name_columns if raw.get(c)), "")
    emails: list[str] = []
    for column in _EMAILS:
        address = str(raw.get(column) or "").strip().lower()
        if not address:
            continue
        if len(address) <= MAILBOX_LEN and _EMAIL.match(address):
            if address not in emails:
                emails.append(address)
        else:
            log.warning(
                "records sync: %s:%s: %s %r is not an e-mail address", source.type, record_id, column, address
            )
    number = str(raw.get(source.number_column) or "").strip() if source.number_column else ""
    return CsvRecord(
        line=0,
        type=source.type,
        id=record_id,
        name=(name or (emails[0] if emails else record_id))[:NAME_LEN],
        number=number[:RECORD_ID_LEN] or None,
        emails=tuple(emails),
    )


class RecordsSyncTimer:
    """``records sync`` every ``interval`` seconds inside ``run`` (first one at start); errors are logged,
    never raised. ``on_change`` is called after a sync that added, changed or deleted a record (the
    daemon re-resolves pattern rules)."""

    def __init__(
        self,
        client: DataverseClient,
        engine: Engine,
        interval: float,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.syncer = RecordsSyncer(client, engine)
        self.interval = interval
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="foldertrack-records-sync", daemon=True)
        self.last_error: str | None = None
        self.last_report: SyncReport | None = None

    def start(self) -> RecordsSyncTimer:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.syncer.sync()
                self.last_report, self.last_error = report, None
                if report.changed and self.on_change is not None:
                    self.on_change()
            except Exception as error:  # a CRM outage must not end the timer
                self.last_error = str(error)
                log.warning("records sync failed: %s", error)
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.syncer.client.close()


def start_records_sync(
    config: Any, engine: Engine, on_change: Callable[[], None] | None = None
) -> RecordsSyncTimer | None:
    """The ``run`` hook: a started timer when ``dataverse.records_sync_interval`` is set, else None.
    Raises ConfigError when the interval is set but ``[dataverse]`` cannot connect."""
    interval = config.dataverse.records_sync_interval
    if not interval:
        return None
    from foldertrack.crm.connect import connect

    return RecordsSyncTimer(connect(config), engine, interval, on_change).start()
