"""``foldertrack simulator`` also runs the token endpoint and Dataverse: what it prints is enough to connect."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import msal
import requests
from click.testing import CliRunner

from foldertrack.cli import main


def test_help_lists_crm_options():
    result = CliRunner().invoke(main, ["simulator", "--help"])
    assert result.exit_code == 0
    for option in ("--tls-port", "--tenant", "--client-id", "--client-secret", "--seed-crm"):
        assert option in result.output


def test_prints_dataverse_endpoints_and_demo_app(dataverse_metadata, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets them override verify=
        monkeypatch.delenv(name, raising=False)
    env = os.environ.copy()
    cmd = [sys.executable, "-m", "foldertrack", "simulator", "--port", "0", "--client-secret", "cli-secret"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        while not (lines and lines[-1].lstrip().startswith("CRM records")):
            line = proc.stdout.readline()
            assert line, f"simulator exited early: {proc.stderr.read()}"
            lines.append(line)
        text = "".join(lines)
        api = re.search(r"Dataverse \(Web API v9\.2\) on (\S+)", text).group(1)
        org = api.removesuffix("/api/data/v9.2/")
        ca = re.search(r"CA certificate\s+(\S+)", text).group(1)
        tenant, client_id, secret = re.search(r"tenant (\S+)\s+client id (\S+)\s+secret (\S+)", text).groups()
        assert secret == "cli-secret" and org.startswith("https://127.0.0.1:")
        assert "Contoso Ltd" in text
        app = msal.ConfidentialClientApplication(
            client_id,
            authority=f"{org}/{tenant}",
            client_credential=secret,
            instance_discovery=False,
            verify=ca,
        )
        token = app.acquire_token_for_client([f"{org}/.default"])["access_token"]
        accounts = requests.get(
            f"{api}accounts?$select=name,accountnumber&$filter=accountnumber eq 'C-1001'",
            headers={"Authorization": f"Bearer {token}"},
            verify=ca,
            timeout=10,
        )
        assert [a["name"] for a in accounts.json()["value"]] == ["Contoso Ltd"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert not os.path.exists(ca)  # the throw-away CA is removed on stop
