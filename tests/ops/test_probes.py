"""Readiness and health tell the truth, through real HTTP to ``/livez``, ``/readyz``, ``/healthz`` and
``/metrics`` of an in-process watcher whose Exchange is unreachable (a closed port on 127.0.0.1), refuses
the credentials, answers HTTP 503, or whose rules reload fails; ``status`` names the mailbox and reason."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.ops.listener import MetricsServer
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.ops.status import collect_status
from foldertrack.simulator import MailSpec
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.testing.harness import (
    SERVICE_ACCOUNT,
    SERVICE_PASSWORD,
    Harness,
    options_for_tests,
    wait_until,
)
from foldertrack.watch.daemon import Watcher, WatchOptions
from tests.ops.test_metrics import fetch, samples, value
from tests.watch.test_status import run_status, status_json

ALICE = "alice@example.com"
RULES = f"""
mailboxes:
  - addresses: [{ALICE}]
    folders:
      Inbox/Contoso:
        record: null
"""
START_TIMEOUT = 1.0


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with Harness(tmp_path, **options_for_tests(start_timeout=START_TIMEOUT, stream_stall_timeout=120.0)) as h:
        h.add_mailbox(ALICE).create_folder("Inbox/Contoso")
        h.write_rules(RULES)
        yield h


def start(harness: Harness, endpoint: str, password: str = SERVICE_PASSWORD) -> tuple[Watcher, MetricsServer]:
    """A watcher against ``endpoint`` (not waiting for readiness: that is what is tested) and its listener."""
    options = WatchOptions(rules_dir=harness.rules_dir, **harness.options)
    settings = ExchangeSettings(
        endpoint=endpoint,
        auth="basic",
        username=SERVICE_ACCOUNT,
        password=password,
        access="impersonation",
        version="Exchange2016",
        request_timeout=5.0,
    )
    connector = ExchangeConnector(settings, max_connections=options.workers + 8)
    watcher = Watcher(
        options, harness.engine, connector, SqlActivitySink(harness.engine), observer=PrometheusObserver()
    )
    harness.watcher = watcher  # the harness stops it
    server = MetricsServer("127.0.0.1", 0, watcher).start()
    watcher.start()
    return watcher, server


def probes(server: MetricsServer) -> dict[str, tuple[int, str]]:
    return {path: fetch(server.url + path) for path in ("/livez", "/readyz", "/healthz")}


def mailbox_status(harness: Harness) -> dict:
    return next(
        (m for m in collect_status(harness.engine)["mailboxes"] if m["mailbox"] == ALICE), {"mode": None}
    )


def test_unreachable_exchange_is_an_error_with_its_reason_not_ok(harness):
    port = closed_port()
    _watcher, server = start(harness, f"http://127.0.0.1:{port}/EWS/Exchange.asmx")
    try:
        # in error, with the real cause, within the start deadline (and the timer's next tick)
        box = wait_until(
            lambda: (b := mailbox_status(harness))["mode"] == "error" and b,
            START_TIMEOUT + 5,
            "alice in error",
        )
        assert f"connection refused (127.0.0.1:{port})" in box["last_error"]
        assert "ErrorTimeoutExpired" not in box["last_error"]  # exchangelib's wrapper is not the cause
        answers = probes(server)
        assert answers["/livez"] == (200, "ok\n")
        assert answers["/readyz"] == (200, "ok\n")  # started: every mailbox attempted, it may have errors
        status, body = answers["/healthz"]
        assert status == 503
        assert body.startswith("every mailbox is in error: 1 of 1 mailbox(es): alice@example.com (")
        assert "connection refused" in body and body.count("\n") == 1
        scrape = samples(server)
        assert value(scrape, "foldertrack_ready") == 1
        assert value(scrape, "foldertrack_healthy") == 0
        assert value(scrape, "foldertrack_mailboxes", mode="error") == 1
        assert value(scrape, "foldertrack_mailboxes", mode="starting") == 0
        codes = {dict(labels)["code"] for (name, labels) in scrape if name == "foldertrack_errors_total"}
        assert "connection_refused" in codes
        assert not codes & {"ErrorTimeoutExpired", "ErrorServerBusy"}
        text = run_status(harness.database_url)
        assert "mode        error" in text and f"connection refused (127.0.0.1:{port})" in text
    finally:
        server.stop()


def test_refused_credentials_are_an_error_at_once(harness):
    _watcher, server = start(harness, harness.sim.url, password="not-the-password")
    try:
        box = wait_until(
            lambda: (b := mailbox_status(harness))["mode"] == "error" and b, 10, "alice in error"
        )
        assert "credentials refused: HTTP 401" in box["last_error"]
        status, body = fetch(server.url + "/healthz")
        assert status == 503 and "credentials refused" in body
        scrape = samples(server)
        assert value(scrape, "foldertrack_ready") == 1 and value(scrape, "foldertrack_healthy") == 0
        assert any(
            name == "foldertrack_errors_total" and dict(labels)["code"] == "unauthorized"
            for (name, labels) in scrape
        )
    finally:
        server.stop()


def test_a_wrong_url_is_named_by_its_http_status(harness):
    _watcher, server = start(harness, harness.sim.url.replace("/EWS/Exchange.asmx", "/EWS/Wrong.asmx"))
    try:
        box = wait_until(
            lambda: (b := mailbox_status(harness))["mode"] == "error" and b,
            START_TIMEOUT + 5,
            "alice in error",
        )
        assert "HTTP 404" in box["last_error"]
        assert fetch(server.url + "/healthz")[0] == 503
        scrape = samples(server)
        assert any(
            name == "foldertrack_errors_total" and dict(labels)["code"] == "http_404"
            for (name, labels) in scrape
        )
    finally:
        server.stop()


def test_http_503_is_an_outage_not_throttling(harness, caplog):
    watcher, server = start(harness, harness.sim.url)
    try:
        assert watcher.ready.wait(20)
        harness.settle()
        wait_until(lambda: fetch(server.url + "/healthz") == (200, "ok\n"), 10, "healthy")
        caplog.set_level(logging.WARNING, logger="foldertrack.watch")
        harness.sim.faults.http_error(503, requests=3)
        mailbox = harness.sim.mailbox(ALICE)
        mailbox.move_item(
            harness.sim.deliver(ALICE, MailSpec(subject="during 503", to=[ALICE])), "Inbox/Contoso"
        )
        harness.wait_tracked("during 503")
        scrape = wait_until(
            lambda: (
                (s := samples(server))
                and any(n == "foldertrack_errors_total" and dict(lb)["code"] == "http_503" for (n, lb) in s)
                and s
            ),
            10,
            "the 503s counted as http_503",
        )
        codes = {dict(labels)["code"] for (name, labels) in scrape if name == "foldertrack_errors_total"}
        assert "ErrorServerBusy" not in codes  # the README's throttling alert stays quiet during an outage
        assert "throttled by Exchange" not in caplog.text
        assert "HTTP 503" in caplog.text
    finally:
        server.stop()


def test_server_busy_is_throttling(harness, caplog):
    watcher, server = start(harness, harness.sim.url)
    try:
        assert watcher.ready.wait(20)
        harness.settle()
        caplog.set_level(logging.WARNING, logger="foldertrack.watch")
        harness.sim.faults.server_busy(requests=1, backoff_ms=100)
        mailbox = harness.sim.mailbox(ALICE)
        mailbox.move_item(harness.sim.deliver(ALICE, MailSpec(subject="busy", to=[ALICE])), "Inbox/Contoso")
        harness.wait_tracked("busy")
        scrape = wait_until(
            lambda: (
                (s := samples(server))
                and any(
                    n == "foldertrack_errors_total" and dict(lb)["code"] == "ErrorServerBusy" for (n, lb) in s
                )
                and s
            ),
            10,
            "the server's ErrorServerBusy counted",
        )
        assert value(scrape, "foldertrack_activity_latency_seconds_count") == 1  # a live move
        assert "throttled by Exchange (ErrorServerBusy" in caplog.text
    finally:
        server.stop()


def test_a_failed_rules_reload_is_a_state_until_a_valid_set_loads(harness, caplog):
    watcher, server = start(harness, harness.sim.url)
    try:
        assert watcher.ready.wait(20)
        wait_until(lambda: fetch(server.url + "/healthz") == (200, "ok\n"), 10, "healthy")
        rules_file = harness.rules_dir / "rules.yaml"
        rules_file.write_text(
            "mailboxes:\n  - addresses: [alice@example.com]\n    folders: 12\n", encoding="utf-8"
        )
        assert watcher.reload_rules() is False

        status, body = fetch(server.url + "/healthz")
        assert status == 503 and body.startswith(
            "degraded: rules reload failed, previous rules still running: "
        )
        assert "rules.yaml" in body
        assert fetch(server.url + "/readyz")[0] == 200  # still started, still tracking with the old rules
        scrape = samples(server)
        assert value(scrape, "foldertrack_rules_reload_failed") == 1
        assert value(scrape, "foldertrack_rules_reloads_total", outcome="failed") == 1
        assert value(scrape, "foldertrack_healthy") == 0
        report = status_json(harness.database_url)
        (instance,) = report["instances"]
        (warning,) = instance["warnings"]
        assert warning["kind"] == "rules_reload_failed" and "rules.yaml" in warning["message"]
        assert report["totals"]["warnings"] == 1 and report["totals"]["instance_warnings"] == 1
        assert "WARNING (" in run_status(harness.database_url)

        # the only rule file renamed away: loud, in the log, health, metrics and status
        caplog.set_level(logging.ERROR, logger="foldertrack.watch")
        rules_file.rename(rules_file.with_suffix(".yaml.bak"))
        assert watcher.reload_rules() is False
        assert "RULES DIRECTORY EMPTY" in caplog.text
        status, body = fetch(server.url + "/healthz")
        assert status == 503 and "no rule files" in body
        (warning,) = status_json(harness.database_url)["instances"][0]["warnings"]
        assert (
            warning["kind"] == "no_rule_files"
            and "still running the previous 1 file(s)" in warning["message"]
        )
        assert value(samples(server), "foldertrack_rules_reload_failed") == 1

        harness.write_rules(RULES)  # a valid set again: everything clears
        assert watcher.reload_rules() is True
        assert fetch(server.url + "/healthz") == (200, "ok\n")
        scrape = samples(server)
        assert value(scrape, "foldertrack_rules_reload_failed") == 0
        assert value(scrape, "foldertrack_rules_reloads_total", outcome="ok") == 1
        report = status_json(harness.database_url)
        assert report["totals"]["instance_warnings"] == 0
        assert all(not i["warnings"] for i in report["instances"])
    finally:
        server.stop()


def test_foldertrack_run_with_exchange_unreachable_says_so(sqlite_url, tmp_path):
    """The operator's view: ``foldertrack run`` (a child process) against a closed port."""
    from foldertrack.testing.process import WatcherProcess, write_config

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES, encoding="utf-8")
    exchange_port, metrics_port = closed_port(), closed_port()
    config = write_config(
        tmp_path / "ft.toml",
        endpoint=f"http://127.0.0.1:{exchange_port}/EWS/Exchange.asmx",
        database_url=sqlite_url,
        rules_dir=rules_dir,
        watch={"start_timeout": "1s"},
    )
    proc = WatcherProcess(config, tmp_path / "run.log").start(
        "--metrics-address", f"127.0.0.1:{metrics_port}"
    )
    url = f"http://127.0.0.1:{metrics_port}"
    try:

        def answer() -> tuple[int, str] | None:
            try:
                got = fetch(url + "/healthz")
            except OSError:  # not listening yet
                return None
            return got if "every mailbox is in error" in got[1] else None

        status, body = wait_until(answer, 30, "/healthz naming the unreachable Exchange")
        assert status == 503 and f"connection refused (127.0.0.1:{exchange_port})" in body
        assert fetch(url + "/readyz") == (200, "ok\n")
        text = fetch(url + "/metrics")[1]
        assert "foldertrack_ready 1.0" in text and "foldertrack_healthy 0.0" in text
        assert 'code="connection_refused"' in text and 'code="ErrorTimeoutExpired"' not in text
        # status reads the database, which the watcher's timer brings up to date a moment after /healthz
        def status_in_error() -> str | None:
            out = run_status(sqlite_url)
            return out if "mode        error" in out else None

        out = wait_until(status_in_error, 10, "status showing the mailbox in error")
        assert f"connection refused (127.0.0.1:{exchange_port})" in out
        assert proc.terminate() == 0
    finally:
        proc.close()
