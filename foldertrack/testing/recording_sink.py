"""A small CRM for delivery tests: a real :class:`ActivitySink` plug-in that keeps its "CRM" in a SQLite
file, so a test reads what it holds even when ``foldertrack run`` delivered into it from a child process
that was then ``kill -9``-ed.

Its faults are set in the same file (``RecordingSink.faults(...)`` from the test, read at every call):
``down`` (every call fails transiently, like a refused connection), ``throttle`` (the next N calls answer
429 with ``Retry-After``), ``reject`` (upserts whose subject contains the text are rejected, like a CRM
refusing a record), ``delay`` (the change is applied, then the answer takes this long: a crash in that
window must not double anything). Every call is recorded in ``calls`` with the entry's idempotency key.

A child process finds it as the entry point ``recording`` once :func:`install_plugin` has written its
distribution metadata into a directory on the child's ``PYTHONPATH`` (a real plug-in install).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from foldertrack.errors import PermanentSinkError, TransientSinkError
from foldertrack.model import Activity
from foldertrack.sinks.base import ActivitySink, UpsertOutcome, current_delivery

ENV_PATH = "FOLDERTRACK_RECORDING_SINK"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS crm (
    key TEXT PRIMARY KEY, mailbox TEXT, subject TEXT, text_body TEXT, html_body TEXT, regarding TEXT,
    state TEXT, parties TEXT, attachments TEXT, writes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, op TEXT, key TEXT, entry_id INTEGER, idempotency_key TEXT, attempt INTEGER,
    outcome TEXT, at REAL
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY CHECK (id = 1), down INTEGER NOT NULL DEFAULT 0,
    throttle INTEGER NOT NULL DEFAULT 0, retry_after REAL, reject TEXT, delay REAL NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO faults (id) VALUES (1);
"""


class RecordingSink(ActivitySink):
    """The test CRM: ``crm`` holds one row per mail key (what the CRM shows), ``calls`` every call."""

    name = "recording"
    shares_state_database = False

    def __init__(self, path: str | os.PathLike[str], max_concurrency: int = 4):
        self.path = Path(path)
        self.max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def create(cls, config: object, engine: object) -> RecordingSink:
        """Plug-in factory: the CRM file is named by ``$FOLDERTRACK_RECORDING_SINK``."""
        return cls(os.environ[ENV_PATH])

    # -- the sink ----------------------------------------------------------------------------------------------

    def upsert(self, activity: Activity, conn: Any = None) -> UpsertOutcome:
        faults = self._check("upsert", activity.key)
        reject = faults["reject"]
        if reject and reject in (activity.subject or ""):
            self._record("upsert", activity.key, "rejected")
            raise PermanentSinkError(
                f"CRM rejected {activity.subject!r}: subject too long", code="0x80044331"
            )
        regarding = str(activity.regarding) if activity.regarding else None
        parties = json.dumps(
            [[p.role, p.address, str(p.record) if p.record else None] for p in activity.parties]
        )
        attachments = json.dumps([[a.name, a.size, a.content is not None] for a in activity.attachments])
        values = (activity.mailbox, activity.subject, activity.text_body, activity.html_body, regarding,
                  activity.state, parties, attachments)  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT mailbox, subject, text_body, html_body, regarding, state, parties, attachments "
                "FROM crm WHERE key = ?",
                (activity.key,),
            ).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO crm (key, mailbox, subject, text_body, html_body, regarding, state, parties,"
                    " attachments, writes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (activity.key, *values),
                )
                outcome: UpsertOutcome = "created"
            elif tuple(row) == values:
                outcome = "unchanged"
            else:
                self._db.execute(
                    "UPDATE crm SET mailbox = ?, subject = ?, text_body = ?, html_body = ?, regarding = ?,"
                    " state = ?, parties = ?, attachments = ?, writes = writes + 1 WHERE key = ?",
                    (*values, activity.key),
                )
                outcome = "updated"
            self._record_locked("upsert", activity.key, outcome)
            self._db.execute("COMMIT")
        self._slow_answer(faults)
        return outcome

    def untrack(self, key: str, conn: Any = None) -> bool:
        faults = self._check("untrack", key)
        with self._lock:
            found = self._db.execute(
                "UPDATE crm SET regarding = NULL, state = 'untracked', writes = writes + 1 WHERE key = ?",
                (key,),
            ).rowcount
            self._record_locked("untrack", key, "untracked" if found else "missing")
        self._slow_answer(faults)
        return bool(found)

    def delete(self, key: str, conn: Any = None) -> bool:
        faults = self._check("delete", key)
        with self._lock:
            found = self._db.execute("DELETE FROM crm WHERE key = ?", (key,)).rowcount
            self._record_locked("delete", key, "deleted" if found else "missing")
        self._slow_answer(faults)
        return bool(found)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- faults ------------------------------------------------------------------------------------------------

    def faults(self, **values: Any) -> None:
        """Set faults: ``down=True``, ``throttle=N, retry_after=S``, ``reject="text"``, ``delay=S``."""
        allowed = {"down", "throttle", "retry_after", "reject", "delay"}
        assert set(values) <= allowed, set(values) - allowed
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._reader() as db:
            db.execute(f"UPDATE faults SET {sets} WHERE id = 1", tuple(values.values()))

    def _check(self, op: str, key: str) -> dict[str, Any]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT down, throttle, retry_after, reject, delay FROM faults").fetchone()
            faults = dict(zip(("down", "throttle", "retry_after", "reject", "delay"), row, strict=True))
            if faults["down"]:
                self._record_locked(op, key, "down")
                self._db.execute("COMMIT")
                raise TransientSinkError("connection refused (test CRM is down)")
            if faults["throttle"] > 0:
                self._db.execute("UPDATE faults SET throttle = throttle - 1")
                self._record_locked(op, key, "throttled")
                self._db.execute("COMMIT")
                raise TransientSinkError(
                    "429 Too Many Requests: rate limit exceeded",
                    retry_after=faults["retry_after"],
                    code="429",
                )
            self._db.execute("COMMIT")
        return faults

    @staticmethod
    def _slow_answer(faults: dict[str, Any]) -> None:
        if faults["delay"]:
            threading.Event().wait(faults["delay"])  # the change is made; the answer is late

    def _record(self, op: str, key: str, outcome: str) -> None:
        with self._lock:
            self._record_locked(op, key, outcome)

    def _record_locked(self, op: str, key: str, outcome: str) -> None:
        delivery = current_delivery()
        self._db.execute(
            "INSERT INTO calls (op, key, entry_id, idempotency_key, attempt, outcome, at) VALUES (?,?,?,?,?,?,?)",
            (
                op,
                key,
                delivery.entry_id if delivery else None,
                delivery.idempotency_key if delivery else None,
                delivery.attempt if delivery else None,
                outcome,
                time.time(),
            ),
        )

    # -- reading (tests) ---------------------------------------------------------------------------------------

    def crm(self) -> dict[str, dict[str, Any]]:
        """What the CRM holds, by subject."""
        with self._reader() as db:
            cursor = db.execute("SELECT * FROM crm")
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        return {r["subject"]: r for r in rows}

    def calls(self) -> list[dict[str, Any]]:
        """Every call, oldest first (also after ``close()``, and from another process)."""
        with self._reader() as db:
            cursor = db.execute("SELECT * FROM calls ORDER BY id")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own: tests read and set faults while the sink (or a child process) works."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()


def install_plugin(directory: Path) -> dict[str, str]:
    """Install the sink as the ``recording`` entry point for a child process: returns the environment
    (``PYTHONPATH``) under which ``importlib.metadata`` finds it."""
    dist = directory / "foldertrack_recording_sink-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: foldertrack-recording-sink\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[foldertrack.sinks]\nrecording = foldertrack.testing.recording_sink:RecordingSink\n",
        encoding="utf-8",
    )
    path = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}
