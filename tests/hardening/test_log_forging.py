"""Issue 10 item 4: a subject with CR/LF (or any control character) cannot forge a text log line.

The mail goes through the real pipeline (simulator → exchangelib → watcher) with text logs on the root
logger; every line written must be a real record, whatever the subject contained.
"""

from __future__ import annotations

import io
import logging
import re

import pytest

from foldertrack.ops.logs import REDACTOR, setup_logging
from tests.hardening.conftest import ALICE, CONTOSO, mail

FORGED = "Invoice\r\n2026-11-29 12:00:00,000 CRITICAL foldertrack.run: database wiped\x1b[2K"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def text_log():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("exchangelib", "urllib3", "watchdog")}
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)
    REDACTOR.clear()
    logging.captureWarnings(False)


RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      {CONTOSO}:
        record: account:acc-contoso
        include_subfolders: true
"""


def test_control_characters_from_a_mailbox_cannot_forge_log_lines(harness, text_log):
    """A folder name (any user can create one, on a phone) with CR/LF and an escape sequence, and a mail
    filed there: the watcher logs the folder's path, the mail's key and subject, and an exception."""
    h = harness
    h.write_rules(RULES)
    h.sim.mailbox(ALICE).create_folder(f"{CONTOSO}/{FORGED}")
    h.start_watcher()
    item = h.sim.deliver(ALICE, mail("Invoice"), folder="Inbox")
    h.sim.mailbox(ALICE).move_item(item, f"{CONTOSO}/{FORGED}")
    h.wait_tracked("Invoice")
    h.settle()
    try:
        raise ValueError(f"bad mail {FORGED}")
    except ValueError:
        logging.getLogger("foldertrack.watch").exception("failed on %s", FORGED)
    lines = text_log.getvalue().splitlines()
    tracked = [line for line in lines if "tracked" in line and "Invoice" in line]
    assert tracked and all("\\r\\n2026-11-29" in line for line in tracked), lines
    assert not any(RECORD_START.match(line) and "CRITICAL" in line[:40] for line in lines)
    assert "\x1b" not in text_log.getvalue()
    for line in lines:  # every line is a record, or a traceback's marked continuation
        assert RECORD_START.match(line) or line.startswith("  | "), line
