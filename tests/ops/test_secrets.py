"""A known password and a known token go in; they must come out nowhere.

Not in ``foldertrack run``'s stdout/stderr (at DEBUG, through Exchange errors: a mailbox that does not
exist, throttling, HTTP 500 and 401, a dropped stream), not in the output of the
commands that show state or configuration, not in any column of any table of the database (nor anywhere
in its file), and not in ``/metrics`` or ``/healthz``.

``foldertrack run`` has no ``--metrics-address`` yet, so the metrics half runs the same pipeline in-process
(Harness watcher + MetricsServer).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select

from foldertrack.cli import main
from foldertrack.ops.listener import start_metrics
from foldertrack.ops.logs import register_credentials, setup_logging
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.simulator import MailSpec
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.records import RecordDirectory
from foldertrack.testing.harness import (
    SERVICE_ACCOUNT,
    SERVICE_PASSWORD,
    Harness,
    options_for_tests,
    wait_until,
)
from tests.ops.test_logs import json_lines, restore_logging  # noqa: F401  (restore_logging: a fixture)
from tests.ops.test_metrics import fetch

SERVICE = "svc-secrets@example.com"
PASSWORD = "pw-Zk3r9QfT7x-sekret"
CLIENT_SECRET = "cs-Hn4t8WmL2pQ-token"
ALICE, GHOST = "alice@example.com", "ghost@example.com"
RECORDS = (
    "type,id,name,number,emails\naccount,acc-contoso,Contoso,C-100,\naccount,acc-fabrikam,Fabrikam,F-200,\n"
)
RULES = f"""
mailboxes:
  - addresses: [{ALICE}, {GHOST}]
    folders:
      Inbox/Contoso: account:acc-contoso
      Inbox/Fabrikam: account:acc-fabrikam
"""


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_absent(secrets: dict[str, str], where: str, text: str) -> None:
    for name, secret in secrets.items():
        assert secret not in text, f"the {name} appears in {where}"


def dump_database(url: str) -> str:
    """Every column of every row of every table, as text."""
    engine = open_database(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        out = []
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    for column, value in row._mapping.items():
                        shown = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                        out.append(f"{table.name}.{column}={shown}")
    finally:
        engine.dispose()
    return "\n".join(out)


@pytest.fixture
def service(tmp_path, simulator):
    """Simulator, credentials laid out as systemd's LoadCredential= would, config, rules, database."""
    simulator.add_service_account(SERVICE, password=PASSWORD, impersonation=True)
    mailbox = simulator.add_mailbox(ALICE, password="user-pw")
    for path in ("Inbox/Contoso", "Inbox/Fabrikam"):
        mailbox.create_folder(path)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "exchange-password").write_text(PASSWORD + "\n", encoding="utf-8")
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET, encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES, encoding="utf-8")
    database = tmp_path / "state" / "foldertrack.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    config = tmp_path / "foldertrack.toml"
    config.write_text(
        f"""
[exchange]
endpoint = "{simulator.url}"
auth = "basic"
username = "{SERVICE}"
access = "impersonation"
version = "Exchange2016"
oauth2_client_secret_file = "{secret_file}"

[database]
url = "{url}"

[rules]
dir = "{rules}"

[watch]
poll_interval = "1s"
debounce = "20ms"
workers = 3
max_attempts = 2
""",
        encoding="utf-8",
    )
    upgrade_database(url)
    engine = open_database(url)
    (tmp_path / "records.csv").write_text(RECORDS, encoding="utf-8")
    RecordDirectory(engine).import_csv(tmp_path / "records.csv")
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLDERTRACK_") and k != "NOTIFY_SOCKET"}
    env["CREDENTIALS_DIRECTORY"] = str(creds)
    return {"sim": simulator, "config": config, "url": url, "database": database, "env": env}


def _tracked(engine, subject: str) -> bool:
    from foldertrack.state.schema import activities

    with engine.connect() as conn:
        return (
            conn.execute(select(activities.c.key).where(activities.c.subject == subject)).first() is not None
        )


@pytest.mark.slow
def test_password_and_token_appear_nowhere_from_a_running_service(service, tmp_path):
    sim, url = service["sim"], service["url"]
    secrets = {
        "password": PASSWORD,
        "client secret": CLIENT_SECRET,
        "Basic auth value": basic_auth(SERVICE, PASSWORD),
    }
    stdout_path, stderr_path = tmp_path / "run.out", tmp_path / "run.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "foldertrack",
                "--debug",
                "run",
                "--config",
                str(service["config"]),
                "--log-level",
                "debug",
            ],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=service["env"],
        )
    engine = open_database(url)
    try:
        wait_until(
            lambda: any(s["mailbox"] == ALICE and s["connected"] for s in sim.subscriptions()),
            timeout=30,
            what=f"foldertrack run to stream {ALICE}",
        )
        mailbox = sim.mailbox(ALICE)

        def file_one(subject: str, fault=None) -> None:
            if fault is not None:
                fault()
            item = sim.deliver(ALICE, MailSpec(subject=subject, to=[ALICE], body=f"body of {subject}"))
            mailbox.move_item(item, "Inbox/Contoso")
            wait_until(lambda: _tracked(engine, subject), timeout=30, what=f"{subject!r} tracked")

        file_one("plain")
        file_one("throttled", lambda: sim.faults.server_busy(requests=1, backoff_ms=100))
        file_one("server error", lambda: sim.faults.http_error(500, requests=2))
        file_one("unauthorized", lambda: sim.faults.http_error(401, requests=1))
        file_one("stream dropped", sim.faults.drop_streams)

        runner = CliRunner(env=service["env"])
        config = ["--config", str(service["config"])]
        for args in (
            ["status", *config],
            ["status", "--json", *config],
            ["config", "check", *config],
            ["activities", "--json", *config],
            ["rules", "check", *config],
            ["db", "current", *config],
        ):
            result = runner.invoke(main, args)
            assert result.exit_code == 0, (args, result.output)
            assert_absent(
                secrets, f"`foldertrack {' '.join(args[:2])}` output", result.output + result.stderr
            )
        status = json.loads(runner.invoke(main, ["status", "--json", *config]).output)
        assert {box["mailbox"] for box in status["mailboxes"]} >= {ALICE}
        assert (
            "*** (from credential exchange-password)"
            in runner.invoke(main, ["config", "check", *config]).output
        )
    finally:
        engine.dispose()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0

    out, err = stdout_path.read_text(errors="replace"), stderr_path.read_text(errors="replace")
    assert_absent(secrets, "run's stdout", out)
    assert_absent(secrets, "run's stderr (logs at DEBUG)", err)
    # the error paths really ran, so their messages were checked too
    for evidence in (
        "ErrorNonExistentMailbox",
        "ErrorServerBusy",
        "Code: 500",
        "UnauthorizedError",
        "stream 0 lost",
    ):
        assert evidence in err, f"{evidence!r} not in the log: the test did not exercise that path"

    assert_absent(secrets, "the database's tables", dump_database(url))
    for path in service["database"].parent.iterdir():  # the file itself: free pages, WAL, journal
        raw = path.read_bytes()
        for name, secret in secrets.items():
            assert secret.encode() not in raw, f"the {name} is in {path.name}"


@pytest.mark.usefixtures("restore_logging")
def test_metrics_health_and_json_logs_never_show_the_password(tmp_path):
    secrets = {
        "password": SERVICE_PASSWORD,
        "Basic auth value": basic_auth(SERVICE_ACCOUNT, SERVICE_PASSWORD),
    }
    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    with Harness(tmp_path, **options_for_tests()) as h:
        h.import_records(RECORDS)
        h.add_mailbox(ALICE).create_folder("Inbox/Contoso")
        h.write_rules(
            f"mailboxes:\n  - addresses: [{ALICE}]\n    folders:\n      Inbox/Contoso: account:acc-contoso\n"
        )
        watcher = h.start_watcher(observer=PrometheusObserver())
        server = start_metrics("127.0.0.1:0", watcher)
        try:
            for n, fault in enumerate(
                (
                    lambda: h.sim.faults.http_error(401, requests=1),
                    lambda: h.sim.faults.http_error(500, requests=1),
                    lambda: h.sim.faults.server_busy(requests=1, backoff_ms=50),
                    h.sim.faults.drop_streams,
                )
            ):
                fault()
                h.sim.deliver(ALICE, MailSpec(subject=f"mail {n}", to=[ALICE]), folder="Inbox/Contoso")
                h.wait_tracked(f"mail {n}")
            h.write_rules(
                f"mailboxes:\n  - addresses: [{ALICE}, {GHOST}]\n    folders:\n      Inbox/Contoso: account:acc-contoso\n"
            )
            assert watcher.reload_rules()
            wait_until(
                lambda: "ErrorNonExistentMailbox" in fetch(server.url + "/metrics")[1],
                what="the missing mailbox's error in /metrics",
            )
            status, metrics = fetch(server.url + "/metrics")
            assert status == 200 and 'code="unauthorized"' in metrics
            assert_absent(secrets, "/metrics", metrics)
            assert_absent(secrets, "/healthz", fetch(server.url + "/healthz")[1])
        finally:
            server.stop()
    json_lines(out.getvalue())  # every line still one JSON object
    assert_absent(secrets, "the JSON logs at DEBUG", out.getvalue())


@pytest.mark.usefixtures("restore_logging")
def test_exchangelib_request_headers_are_masked_once_credentials_are_registered(tmp_path):
    """exchangelib logs each request's headers (``Authorization: Basic …``) at DEBUG. ``setup_logging``
    keeps it at WARNING; should anyone turn it up, the redactor still masks what was registered."""
    out = io.StringIO()
    setup_logging("DEBUG", "text", stream=out)
    logging.getLogger("exchangelib").setLevel(logging.DEBUG)
    register_credentials(SERVICE_ACCOUNT, SERVICE_PASSWORD)
    with Harness(tmp_path, **options_for_tests()) as h:
        h.import_records(RECORDS)
        h.add_mailbox(ALICE).create_folder("Inbox/Contoso")
        h.write_rules(
            f"mailboxes:\n  - addresses: [{ALICE}]\n    folders:\n      Inbox/Contoso: account:acc-contoso\n"
        )
        h.start_watcher()
        h.settle()
    text = out.getvalue()
    assert "'Authorization': 'Basic ***'" in text  # the header was logged, and masked
    assert_absent(
        {"Basic auth value": basic_auth(SERVICE_ACCOUNT, SERVICE_PASSWORD), "password": SERVICE_PASSWORD},
        "exchangelib's DEBUG log",
        text,
    )
