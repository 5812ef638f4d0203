"""Issue 10 "Also fix": one test each."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from urllib3.exceptions import InsecureRequestWarning

from foldertrack.cli import main
from foldertrack.config import EWS_VERSIONS as CONFIG_VERSIONS
from foldertrack.exchange.connection import EWS_VERSIONS as CONNECTOR_VERSIONS
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.ops.logs import REDACTOR, setup_logging
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.ops.status import collect_status
from foldertrack.state.schema import KEY_LEN, dead_letters
from foldertrack.testing.harness import Harness, options_for_tests
from tests.hardening.conftest import ALICE, BOB, CONTOSO, file, mail, prepare, rows


@pytest.fixture
def log_to():
    """``setup_logging`` on the real root logger, put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("exchangelib", "urllib3", "watchdog")}

    def setup(level_name: str, fmt: str = "text") -> io.StringIO:
        out = io.StringIO()
        setup_logging(level_name, fmt, stream=out)
        return out

    with warnings.catch_warnings():
        yield setup
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)
    REDACTOR.clear()
    logging.captureWarnings(False)


def _database_down() -> OperationalError:
    engine = create_engine("sqlite:////nonexistent-directory/for/sure/state.db")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the database was reachable")


def test_a_database_outage_logs_one_line_per_attempt_and_the_traceback_only_at_debug(log_to):
    out = log_to("INFO")
    for _ in range(3):  # three back-off steps of the timer
        try:
            raise _database_down()
        except OperationalError:
            logging.getLogger("foldertrack.watch").exception("timer: state database unreachable")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all("OperationalError" in line and "unable to open database file" in line for line in lines)
    debug = log_to("DEBUG")
    try:
        raise _database_down()
    except OperationalError:
        logging.getLogger("foldertrack.watch").exception("timer: state database unreachable")
    assert "Traceback" in debug.getvalue()


def test_a_10kb_message_id_has_the_same_limits_on_every_database(tmp_path, database_url):
    with Harness(tmp_path, database_url=database_url, **options_for_tests()) as h:
        prepare(h)
        h.start_watcher()
        file(h, mail("long message id", message_id="<" + "x" * 10_000 + "@example.com>"))
        activity = h.wait_tracked("long message id")
        h.settle()
        assert len(activity["key"]) <= KEY_LEN and len(activity["message_id"]) <= KEY_LEN
        assert rows(h, dead_letters) == []


def test_rule_errors_quote_a_short_excerpt_not_the_file(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" + "private line\n" * 100_000, encoding="utf-8")
    (rules / "passwd.yaml").symlink_to(secret)
    (rules / "big.yaml").write_text(
        f"mailboxes:\n  - address: {ALICE}\n    folders:\n      Inbox/A: {'z' * 1_000_000}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["rules", "check", str(rules)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2 and all(len(line) < 700 for line in lines), [len(line) for line in lines]
    assert "private line" not in result.output


def test_a_duplicate_that_changed_nothing_is_not_counted_as_tracked(tmp_path):
    with Harness(tmp_path, **options_for_tests()) as h:
        prepare(h, (ALICE, BOB))
        observer = PrometheusObserver()
        h.start_watcher(observer=observer)
        same = mail("sent to both", to=[ALICE, BOB])
        file(h, same, CONTOSO)
        h.wait_tracked("sent to both")
        h.settle()
        file(h, same, CONTOSO, mailbox=BOB)  # Bob files his copy: one activity, nothing changes
        h.wait_for(lambda: h.sim.mailbox(BOB).items(CONTOSO), 5)
        h.wait_for(lambda: h.watcher.totals.pages >= 3, 10, "Bob's folder caught up")
        h.settle()
        assert observer.registry.get_sample_value("foldertrack_items_total", {"outcome": "tracked"}) == 1.0
        assert h.watcher.totals.tracked == 1
        assert len(h.activities()) == 1


def test_the_config_and_the_connector_know_the_same_exchange_versions():
    assert set(CONFIG_VERSIONS) == set(CONNECTOR_VERSIONS)
    for version in CONFIG_VERSIONS:
        settings = ExchangeSettings(
            endpoint="http://127.0.0.1:1/EWS/Exchange.asmx", auth="basic", username="u", password="p"
        )
        connector = ExchangeConnector(
            ExchangeSettings(**{**settings.__dict__, "version": version}), max_connections=2
        )
        assert connector.configuration.version.api_version == version


RULES_NFD = f"""
mailboxes:
  - address: {ALICE}
    folders:
      "Inbox/Kunden/Mu\\u0308ller": account:acc-contoso
"""


def test_rule_paths_and_folder_names_compare_in_nfc(harness):
    h = harness
    h.sim.mailbox(ALICE).create_folder("Inbox/Kunden/Müller")  # NFC, one code point
    h.write_rules(RULES_NFD)  # u + combining diaeresis, as macOS or a phone may write it
    h.start_watcher()
    file(h, mail("für Müller"), "Inbox/Kunden/Müller")
    h.wait_tracked("für Müller", regarding_id="acc-contoso")
    h.settle()
    (mailbox,) = [m for m in collect_status(h.engine)["mailboxes"] if m["mailbox"] == ALICE]
    assert mailbox["warnings"] == [] and [f["status"] for f in mailbox["folders"]] == ["active"]


def test_tls_verification_off_is_said_once_and_warnings_stay_json(log_to, capsys):
    out = log_to("INFO", "json")
    settings = ExchangeSettings(
        endpoint="https://127.0.0.1:1/EWS/Exchange.asmx",
        auth="basic",
        username="u",
        password="p",
        verify_tls=False,
    )
    for _ in range(2):
        ExchangeConnector(settings, max_connections=2)
    for _ in range(3):
        warnings.warn("Unverified HTTPS request is being made", InsecureRequestWarning, stacklevel=1)
    warnings.warn("something else worth one line", UserWarning, stacklevel=1)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is JSON
    assert sum("TLS certificate verification is OFF" in line["message"] for line in lines) == 1
    assert any(line["logger"] == "py.warnings" and "worth one line" in line["message"] for line in lines)
    assert not any("Unverified HTTPS" in line["message"] for line in lines)
    assert capsys.readouterr().err == ""
