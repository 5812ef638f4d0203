"""The benchmark scripts still run, on tiny sizes (their figures are measured by hand; see README
"Measured"). Only that they complete and print their summary is checked: never a timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from foldertrack.testing.fixtures_db import TEST_DATABASE_ENV

BENCH = Path(__file__).resolve().parents[1] / "bench"

RUNS = {
    "burst": ["--mails", "40", "--spread", "4", "--folders", "2"],
    "delivery": [
        "--mailboxes",
        "2",
        "--moves",
        "10",
        "--rate",
        "20",
        "--burst",
        "20",
        "--sustained",
        "30",
        "--sustained-limit",
        "10",
        "--sustained-window",
        "1",
    ],
    "latency": [
        "--mailboxes",
        "4",
        "--folders",
        "2",
        "--moves",
        "10",
        "--rate",
        "20",
        "--poll-interval",
        "1",
    ],
    # the same script through Microsoft Graph: change notifications, then delta polling (script "latency")
    "latency-graph": [
        *("--mailboxes", "4", "--folders", "2", "--moves", "10", "--rate", "20", "--source", "graph"),
        *("--graph-poll-interval", "1", "--idle", "0.5"),
    ],
    "scale": ["--mailboxes", "20", "--folders", "2", "--idle", "1", "--sample", "4"],
    "fleet": ["--mailboxes", "12", "--instances", "2", "--folders", "2", "--idle", "1", "--window", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_script_runs_on_tiny_sizes(script, request):
    if script == "delivery":
        request.getfixturevalue("dataverse_metadata")  # skips without ../shared/dataverse, like the e2e tests
    extra: list[str] = []
    if script == "fleet":  # `foldertrack run` processes on PostgreSQL (a schema of its own, dropped after)
        base = os.environ.get(TEST_DATABASE_ENV) or pytest.skip(f"{TEST_DATABASE_ENV} is not set")
        extra = ["--no-profile", "--database-url", base]
    result = subprocess.run(
        [sys.executable, str(BENCH / f"{script.removesuffix('-graph')}.py"), *RUNS[script], *extra],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.startswith("machine: ")
    assert "summary" in result.stdout or "RSS at the end" in result.stdout
