"""``foldertrack simulator`` in its own process: prints endpoint and credentials, serves, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests
from click.testing import CliRunner

from foldertrack.cli import main


def test_help_lists_options():
    result = CliRunner().invoke(main, ["simulator", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--mailbox", "--password", "--service-account"):
        assert option in result.output


def test_runs_in_foreground_and_stops_on_sigterm():
    cmd = [sys.executable, "-m", "foldertrack", "simulator", "--port", "0", "--mailbox", "carol@example.com"]
    cmd += ["--password", "s3cret", "--service-account", "svc@example.com", "--folder", "Inbox/Customers"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("EWS simulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        assert "carol@example.com" in proc.stdout.readline()
        assert "svc@example.com" in proc.stdout.readline()
        assert requests.post(url, data=b"", timeout=5).status_code == 401
        busy = requests.post(
            url.replace("/EWS/Exchange.asmx", "/control/faults"), json={"action": "clear"}, timeout=5
        )
        assert busy.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "simulator stopped" in err


def test_profile_option_switches_the_server_behaviour():
    """``--profile html-only-bodies`` reaches the running simulator (each profile's behaviour: test_sim_profiles)."""
    cmd = [sys.executable, "-m", "foldertrack", "simulator", "--port", "0", "--profile", "html-only-bodies"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        url = proc.stdout.readline().split()[-1]
        snapshot = requests.get(url.replace("/EWS/Exchange.asmx", "/control/faults"), timeout=5).json()
        assert snapshot.get("profile") == "html-only-bodies", snapshot
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_unknown_profile_is_a_usage_error():
    result = CliRunner().invoke(main, ["simulator", "--profile", "exchange-2003"])
    assert result.exit_code == 2 and "exchange-2003" in result.output
