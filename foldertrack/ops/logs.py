"""Logging to stderr (journald picks it up) in one readable line per event, secrets never included."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # exchangelib logs request bodies at DEBUG (they carry the impersonation header, never the password);
    # keep its chatter out unless asked for
    for noisy in ("exchangelib", "urllib3", "watchdog", "requests_ntlm"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
