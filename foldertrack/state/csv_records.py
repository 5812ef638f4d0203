"""Reading and validating a record CSV (``type,id,name,number,emails``), reporting every bad row at once."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from foldertrack.errors import RecordImportError
from foldertrack.model import RecordRef
from foldertrack.state.schema import MAILBOX_LEN, NAME_LEN, RECORD_ID_LEN

COLUMNS: tuple[str, ...] = ("type", "id", "name", "number", "emails")
REQUIRED: tuple[str, ...] = ("type", "id", "name")
_EMAIL = re.compile(r"^[^@\s;,<>]+@[^@\s;,<>]+\.[^@\s;,<>]+$")


@dataclass(frozen=True)
class CsvRecord:
    """One valid row: type and emails normalised to lower case, number None when empty."""

    line: int
    type: str
    id: str
    name: str
    number: str | None
    emails: tuple[str, ...]


def read_records_csv(path: str | Path) -> list[CsvRecord]:
    """Parse and validate the whole file; raise RecordImportError, one ``FILE:LINE: message`` per problem."""
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise RecordImportError(f"{shown}: cannot read: {error.strerror or error}") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise RecordImportError(f"{shown}:{line}: not valid UTF-8 (save the file as UTF-8)") from None

    problems: list[str] = []
    rows: list[CsvRecord] = []
    seen: dict[tuple[str, str], int] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    previous_end = 0
    try:
        for fields in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank line
            if header is None:
                header = [f.strip().lower() for f in fields]
                problems.extend(f"{shown}:{line}: {p}" for p in _header_problems(header))
                if problems:
                    break
                continue
            row, row_problems = _parse_row(header, fields)
            if row is not None:
                key = (row[0], row[1])
                if key in seen:
                    row_problems.append(f"duplicate record {row[0]}:{row[1]} (first on line {seen[key]})")
                else:
                    seen[key] = line
            problems.extend(f"{shown}:{line}: {p}" for p in row_problems)
            if row is not None and not row_problems:
                rows.append(CsvRecord(line, *row))
    except csv.Error as error:
        problems.append(f"{shown}:{reader.line_num}: {error}")
    if header is None and not problems:
        problems.append(f"{shown}:1: no header line: expected {','.join(COLUMNS)}")
    if problems:
        error = RecordImportError("\n".join(problems))
        error.problems = problems  # type: ignore[attr-defined]
        raise error
    return rows


def ignored_columns(path: str | Path) -> list[str]:
    """Header columns the import ignores (not in COLUMNS), for a note; [] when unreadable (the import
    itself reports that). Extra columns, as CRM exports have, are ignored once every required one is there."""
    try:
        text = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8).decode("utf-8")
        header = next(
            (row for row in csv.reader(io.StringIO(text, newline="")) if any(f.strip() for f in row)), []
        )
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [h.strip() for h in header if h.strip().lower() not in COLUMNS]


def _header_problems(header: list[str]) -> list[str]:
    problems = []
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown and missing:  # a typo (or no header line); with every required column they are ignored (H7)
        problems.append(
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
            f"(the header must name columns from {','.join(COLUMNS)})"
        )
    if missing:
        problems.append(
            f"header lacks required column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})"
        )
    duplicated = sorted({h for h in header if header.count(h) > 1 and h in COLUMNS})
    if duplicated:
        problems.append(f"column(s) {', '.join(duplicated)} appear more than once in the header")
    return problems


def _parse_row(
    header: list[str], fields: list[str]
) -> tuple[tuple[str, str, str, str | None, tuple[str, ...]] | None, list[str]]:
    """``(type, id, name, number, emails)`` and this row's problems; the tuple is None if type/id are bad."""
    problems: list[str] = []
    if len(fields) > len(header):
        problems.append(f"{len(fields)} fields, but the header has {len(header)}")
    value = dict(zip(header, (f.strip() for f in fields), strict=False))
    kind, ident = value.get("type", "").lower(), value.get("id", "")
    name, number = " ".join(value.get("name", "").split()), value.get("number", "") or None
    ok_key = True
    if not kind:
        problems.append("type is empty")
        ok_key = False
    if not ident:
        problems.append("id is empty")
        ok_key = False
    if ok_key:
        try:
            RecordRef.parse(f"{kind}:{ident}")
        except ValueError as error:
            problems.append(str(error))
            ok_key = False
    if not name:
        problems.append("name is empty")
    elif len(name) > NAME_LEN:
        problems.append(f"name is longer than {NAME_LEN} characters")
    if number is not None and len(number) > RECORD_ID_LEN:
        problems.append(f"number is longer than {RECORD_ID_LEN} characters")
    emails: list[str] = []
    for raw in value.get("emails", "").split(";"):
        address = raw.strip().lower()
        if not address:
            continue
        if len(address) > MAILBOX_LEN or not _EMAIL.match(address):
            problems.append(f"{raw.strip()!r} is not an e-mail address (separate several with ';')")
        elif address not in emails:
            emails.append(address)
    if not ok_key:
        return None, problems
    return (kind, ident, name, number, tuple(emails)), problems
