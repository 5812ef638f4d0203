"""``foldertrack demo``: the Quick start's first command, Exchange to CRM on the built-in simulators."""

import re

import pytest
from click.testing import CliRunner

from foldertrack.cli import main


@pytest.fixture(autouse=True)
def _no_sandbox_ca_bundle(monkeypatch):
    """Like a user's shell: no $REQUESTS_CA_BUNDLE pointing away from the simulator's CA (the sink passes
    its CA per request anyway; this keeps the test independent of the machine's environment)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _row(output: str, subject: str) -> str:
    """The CRM table's line for ``subject`` (the table follows "the CRM (Dataverse) now holds:")."""
    table = output.split("now holds:", 1)[1]
    return next(line for line in table.splitlines() if line.startswith(subject))


def test_demo_delivers_into_the_simulated_crm_and_reports_both_latencies(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "record directory synced from the CRM" in result.output
    renewal = _row(result.output, "Fabrikam renewal")
    assert re.search(
        r"Fabrikam renewal\s+Fabrikam Inc\s+from:Jane Doe, to:alice@example.com\s+Tracked to CRM", renewal
    )
    assert re.search(
        r"Printer broken\s+-\s", _row(result.output, "Printer broken")
    )  # untracked: no regarding
    table = result.output.split("now holds:", 1)[1]
    assert table.count("Joint proposal") == 1  # filed from two mailboxes: one CRM email
    assert "move → local activity over 8 moves" in result.output
    assert "move → email in the CRM over 8 moves" in result.output


def test_demo_with_the_local_sink_only(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--sink", "sql", "--keep", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "Fabrikam renewal                 account:acc-fabrikam   tracked" in result.output
    assert "Printer broken                   -                      untracked" in result.output
    assert "move → local activity over 8 moves" in result.output
    assert "in the CRM" not in result.output
