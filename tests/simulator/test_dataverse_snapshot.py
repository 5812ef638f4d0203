"""The packaged column snapshot (what the simulated Dataverse enforces without ``../shared``) is exactly what
the Common Data Model files in ``../shared/dataverse`` say."""

import json

import pytest

from foldertrack.simulator.dataverse import metadata


def test_the_packaged_snapshot_matches_the_cdm_files(tmp_path, monkeypatch):
    directory = metadata.shared_dir()
    if not directory.is_dir():
        pytest.skip(f"Dataverse CDM files not found at {directory} (set FOLDERTRACK_SHARED)")
    packaged = json.loads(metadata.SNAPSHOT.read_text(encoding="utf-8"))
    monkeypatch.setattr(metadata, "SNAPSHOT", tmp_path / "columns.json")
    fresh = json.loads(metadata.write_snapshot(directory).read_text(encoding="utf-8"))
    assert packaged == fresh, "regenerate: python -m foldertrack.simulator.dataverse.metadata"


def test_without_the_cdm_files_the_simulator_uses_the_snapshot(tmp_path):
    from_files = metadata.load_tables() if metadata.shared_dir().is_dir() else None
    from_snapshot = metadata.load_tables(tmp_path)  # an empty folder: every file comes from the snapshot
    email = from_snapshot["email"].columns
    assert email["subject"].max_length == 200
    assert 4 in email["statuscode"].options  # Received
    if from_files is not None:
        assert {n: t.columns for n, t in from_files.items()} == {
            n: t.columns for n, t in from_snapshot.items()
        }
