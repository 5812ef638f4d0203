"""The record directory: CSV import (all-or-nothing, every bad line named, idempotent) and lookups."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from foldertrack.errors import RecordImportError
from foldertrack.model import RecordRef
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import records

DATA = Path(__file__).parent / "data"


@pytest.fixture
def directory(database_engine) -> RecordDirectory:
    return RecordDirectory(database_engine)


def write(tmp_path: Path, text: str, name: str = "records.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_good_file_with_bom(directory):
    report = directory.import_csv(DATA / "records.csv")

    assert (report.created, report.updated, report.unchanged) == (5, 0, 0)
    entries = {str(e.ref): e for e in directory.list()}
    assert entries["account:acc-001"].emails == ("info@contoso.example", "sales@contoso.example")
    assert entries["account:acc-001"].number == "1001"
    assert entries["opportunity:opp-1"].ref.name == "Contoso, big deal"
    assert entries["account:acc-002"].emails == ()


def test_reimport_is_idempotent_and_updates(directory):
    directory.import_csv(DATA / "records.csv")

    again = directory.import_csv(DATA / "records.csv")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 5)

    update = directory.import_csv(DATA / "records_update.csv")
    assert (update.created, update.updated, update.unchanged) == (0, 2, 0)
    entries = {str(e.ref): e for e in directory.list()}
    assert entries["account:acc-001"].ref.name == "Contoso Limited"
    assert entries["account:acc-001"].emails == ("info@contoso.example",)
    assert entries["account:acc-002"].emails == ("billing@fabrikam.example",)
    assert "contact:con-001" in entries  # records missing from the file are kept


def test_bad_rows_are_all_reported_and_nothing_is_imported(directory, database_engine):
    path = DATA / "records_bad.csv"

    with pytest.raises(RecordImportError) as caught:
        directory.import_csv(path)

    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}:3: record type 'widget' is not one of account, contact, lead, opportunity, incident",
        f"{path}:4: id is empty",
        f"{path}:5: name is empty",
        f"{path}:6: 'not-an-address' is not an e-mail address (separate several with ';')",
        f"{path}:7: duplicate record account:acc-001 (first on line 2)",
    ]
    with database_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(records)).scalar() == 0


def test_line_numbers_count_blank_lines_and_multiline_fields(directory, tmp_path):
    path = write(tmp_path, 'type,id,name\n\naccount,a1,"two\nlines"\n\ncontact,,x\n')
    with pytest.raises(RecordImportError, match=rf"^{path}:6: id is empty$"):
        directory.import_csv(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: no header line"),
        ("account,a1,Contoso\n", ":1: unknown columns 'account', 'a1', 'contoso'"),
        ("type,id,nam\n", ":1: unknown column 'nam'"),
        ("type,id,name\naccount,a1,A,extra\n", ":2: 4 fields, but the header has 3"),
    ],
)
def test_header_and_shape_problems(directory, tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(RecordImportError, match=message):
        directory.import_csv(path)


def test_not_utf8_names_the_line(directory, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("type,id,name\naccount,a1,Müller\n".encode("latin-1"))
    with pytest.raises(RecordImportError, match=r":2: not valid UTF-8"):
        directory.import_csv(path)


def test_missing_file(directory, tmp_path):
    with pytest.raises(RecordImportError, match="cannot read"):
        directory.import_csv(tmp_path / "nope.csv")


def test_find_by_name_is_case_insensitive_and_by_number(directory):
    directory.import_csv(DATA / "records.csv")

    assert directory.find("account", "CONTOSO LTD") == RecordRef("account", "acc-001")
    assert directory.find(None, "contoso ltd").name == "Contoso Ltd"
    assert directory.find("account", "1002", by="number") == RecordRef("account", "acc-002")
    assert directory.find("account", "1002") is None  # by name only
    assert directory.find(None, "opp-7", by="name_or_number") == RecordRef("opportunity", "opp-1")
    assert directory.find("contact", "Contoso Ltd") is None


def test_find_non_ascii_names_case_insensitively(directory, tmp_path):
    directory.import_csv(write(tmp_path, "type,id,name\naccount,m1,Müller GmbH\n"))
    assert directory.find("account", "MÜLLER gmbh") == RecordRef("account", "m1")


def test_ambiguous_name_is_none_and_says_so(directory, tmp_path):
    directory.import_csv(write(tmp_path, "type,id,name\naccount,a1,Acme\naccount,a2,ACME\ncontact,c1,Acme\n"))

    assert directory.find("account", "acme") is None
    lookup = directory.lookup("account", "acme")
    assert lookup.ambiguous
    assert lookup.matches == (RecordRef("account", "a1"), RecordRef("account", "a2"))
    assert directory.lookup("contact", "acme").record == RecordRef("contact", "c1")


def test_by_address_prefers_contact_then_account_then_lead(directory):
    directory.import_csv(DATA / "records.csv")

    assert directory.by_address("Alice@Contoso.example") == RecordRef("contact", "con-001")
    assert directory.by_address("info@contoso.example") == RecordRef("account", "acc-001")  # over the lead
    assert directory.by_address("bob@fabrikam.example") == RecordRef("lead", "lead-001")
    assert directory.by_address("nobody@example.com") is None
    assert directory.by_addresses(["ALICE@contoso.example", "x@y.z"]) == {
        "alice@contoso.example": RecordRef("contact", "con-001")
    }


def test_two_contacts_with_one_address_resolve_to_none(directory, tmp_path):
    directory.import_csv(write(tmp_path, "type,id,name,emails\ncontact,c1,A,s@x.com\ncontact,c2,B,s@x.com\n"))
    assert directory.by_address("s@x.com") is None


def test_get_fills_in_the_name(directory):
    directory.import_csv(DATA / "records.csv")
    assert directory.get(RecordRef("account", "acc-002")).name == "Fabrikam Inc"
    assert directory.get(RecordRef("account", "missing")) is None
