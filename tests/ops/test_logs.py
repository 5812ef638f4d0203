"""Log formats (text, json) and the secret redactor, on the real root logger and a real watcher."""

from __future__ import annotations

import base64
import io
import json
import logging
from datetime import UTC, datetime

import pytest

from foldertrack.ops.logs import REDACTOR, register_credentials, register_secret, setup_logging
from foldertrack.simulator import MailSpec
from foldertrack.testing.harness import Harness, options_for_tests

ALICE = "alice@example.com"


@pytest.fixture
def restore_logging():
    """setup_logging changes the process's root logger: put it back, and forget test secrets."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {
        name: logging.getLogger(name).level
        for name in ("exchangelib", "urllib3", "watchdog", "requests_ntlm")
    }
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)
    REDACTOR.clear()


def json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_json_lines_carry_time_level_logger_message_context_and_exception(restore_logging):
    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    log = logging.getLogger("foldertrack.watch")
    log.info("%s: tracked %s", ALICE, "mid:<1@x>", extra={"mailbox": ALICE, "folder": "Inbox/Kunden/Müller"})
    log.debug("two\nlines")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sync failed")
    logging.getLogger("exchangelib").info("chatter stays out below WARNING")

    first, second, third = json_lines(out.getvalue())
    assert set(first) == {"time", "level", "logger", "message", "mailbox", "folder"}
    assert first["level"] == "INFO" and first["logger"] == "foldertrack.watch"
    assert first["message"] == f"{ALICE}: tracked mid:<1@x>"
    assert first["mailbox"] == ALICE and first["folder"] == "Inbox/Kunden/Müller"
    assert first["time"].endswith("Z")
    when = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert when.tzinfo is not None and abs((datetime.now(UTC) - when).total_seconds()) < 60
    assert second == {**second, "level": "DEBUG", "message": "two\nlines"} and "mailbox" not in second
    assert third["level"] == "ERROR" and third["message"] == "sync failed"
    assert third["exception"].startswith("Traceback") and "ValueError: boom" in third["exception"]


def test_text_format_is_one_readable_line(restore_logging):
    out = io.StringIO()
    setup_logging("info", stream=out)
    logging.getLogger("foldertrack.watch").info("%s: mode %s → %s", ALICE, "starting", "streaming")
    logging.getLogger("foldertrack.watch").debug("not shown at INFO")
    (line,) = out.getvalue().splitlines()
    assert line.endswith(f"INFO    foldertrack.watch: {ALICE}: mode starting → streaming")


def test_unknown_format_is_refused(restore_logging):
    with pytest.raises(ValueError, match="text, json"):
        setup_logging("INFO", "yaml")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_registered_secrets_are_masked_everywhere_in_a_line(restore_logging, fmt):
    out = io.StringIO()
    setup_logging("DEBUG", fmt, stream=out)
    register_credentials("svc@example.com", "hunter2-pw")
    register_secret("oauth-client-secret-value")
    register_secret("ab")  # too short to mask safely: ignored
    basic = base64.b64encode(b"svc@example.com:hunter2-pw").decode()
    log = logging.getLogger("foldertrack.test")
    log.info("login with %s failed at the table", "hunter2-pw")
    log.warning("headers: {'Authorization': 'Basic %s'}", basic)
    log.info("secret in the format string itself: oauth-client-secret-value", extra={"mailbox": "hunter2-pw"})
    try:
        raise RuntimeError("server said: bad password hunter2-pw")
    except RuntimeError:
        log.exception("request failed")
    text = out.getvalue()
    for secret in ("hunter2-pw", basic, "oauth-client-secret-value"):
        assert secret not in text
    assert text.count("***") >= 5
    assert "at the table" in text  # "ab" was too short to register: ordinary text is left alone
    if fmt == "json":
        assert [line["message"] for line in json_lines(text)][:2] == [
            "login with *** failed at the table",
            "headers: {'Authorization': 'Basic ***'}",
        ]


def test_a_watcher_at_debug_writes_only_json_lines(restore_logging, tmp_path):
    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    with Harness(tmp_path, **options_for_tests()) as h:
        h.import_records("type,id,name,number,emails\naccount,acc-contoso,Contoso,C-100,\n")
        h.add_mailbox(ALICE).create_folder("Inbox/Contoso")
        h.write_rules(
            f"mailboxes:\n  - addresses: [{ALICE}]\n    folders:\n      Inbox/Contoso: account:acc-contoso\n"
        )
        h.start_watcher()
        h.sim.deliver(ALICE, MailSpec(subject="json me", to=[ALICE]), folder="Inbox/Contoso")
        h.wait_tracked("json me")
        h.settle()
    lines = json_lines(out.getvalue())
    assert {line["level"] for line in lines} >= {"DEBUG", "INFO"}
    tracked = [
        line for line in lines if line["logger"] == "foldertrack.watch" and " tracked " in line["message"]
    ]
    assert len(tracked) == 1 and tracked[0]["message"].startswith(f"{ALICE} Inbox/Contoso: tracked ")
