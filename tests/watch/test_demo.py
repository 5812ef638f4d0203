from click.testing import CliRunner

from foldertrack.cli import main


def test_demo_runs_the_whole_pipeline_and_reports_latency(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "Fabrikam renewal                 account:acc-fabrikam   tracked" in result.output
    assert "Printer broken                   -                      untracked" in result.output
    assert result.output.count("Joint proposal") >= 2  # moved, then listed once
    assert "move → activity latency over 8 moves" in result.output
