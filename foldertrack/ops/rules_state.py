"""Whether the rules this watcher runs on are the ones on disk: a refused reload is a state, not a log line.

After a reload fails (or the directory has no rule files left, e.g. the only file renamed to ``.bak``) the
previous rules keep running, and until a valid set loads: ``/healthz`` says degraded, ``status`` shows the
warning (a ``watcher_warnings`` row, so it works across instances and after the watcher is gone from memory)
and ``foldertrack_rules_reload_failed`` is 1.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from foldertrack.errors import RuleError
from foldertrack.state import watch_store as store
from foldertrack.state.schema import watcher_warnings
from foldertrack.state.types import utcnow

log = logging.getLogger("foldertrack.watch")

NO_RULE_FILES = "no_rule_files"
RELOAD_FAILED = "rules_reload_failed"
MAX_MESSAGE = 600


@dataclass(frozen=True)
class RulesProblem:
    kind: str  # NO_RULE_FILES | RELOAD_FAILED
    message: str
    since: datetime


class RulesState:
    """The last reload's outcome, in memory (health, metrics) and in ``watcher_warnings`` (status)."""

    def __init__(self, engine: Engine, instance: str | None, name: str | None) -> None:
        self.engine = engine
        self.instance = (instance or name or "foldertrack")[:64]
        self.name = name or "foldertrack"
        self.files = 0  # rule files of the set running now
        self.reloads_failed = 0
        self._problem: RulesProblem | None = None
        self._lock = threading.Lock()

    @property
    def problem(self) -> RulesProblem | None:
        return self._problem

    def loaded(self, rules: Any) -> None:
        """A valid set is running: any earlier problem is over."""
        self.files = len(getattr(rules, "files", ()) or ())
        with self._lock:
            had, self._problem = self._problem, None
        if had is not None:
            log.warning("rules: a valid set loaded again; the earlier problem is cleared")
        self._write(None)

    def failed(self, exc: RuleError) -> None:
        """A reload was refused: the previous rules run on. No rule files at all is its own, louder kind."""
        empty = any("no rule files" in p.message or "does not exist" in p.message for p in exc.problems)
        if empty:
            kind = NO_RULE_FILES
            message = (
                f"the rules directory has no rule files (*.yaml) any more: {exc.problems[0].path}; "
                f"still running the previous {self.files} file(s) until a valid set loads"
            )
            log.error("RULES DIRECTORY EMPTY: %s", message)
        else:
            kind = RELOAD_FAILED
            first = exc.problems[0] if exc.problems else None
            where = str(first) if first else "invalid rules"
            more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            message = f"rules reload failed, previous rules still running: {where}{more}"
        with self._lock:
            since = self._problem.since if self._problem and self._problem.kind == kind else utcnow()
            self._problem = RulesProblem(kind, message[:MAX_MESSAGE], since)
            self.reloads_failed += 1
        self._write(self._problem)

    def clear(self) -> None:
        """The watcher stops: its warnings go with it."""
        try:
            with store.writing(self.engine) as conn:
                conn.execute(delete(watcher_warnings).where(watcher_warnings.c.instance == self.instance))
        except Exception as exc:  # advisory; status ignores rows of instances that are gone
            log.debug("rules warning not cleared: %s", exc)

    def _write(self, problem: RulesProblem | None) -> None:
        try:
            with store.writing(self.engine) as conn:
                _replace(conn, self.instance, self.name, problem)
        except Exception as exc:  # the database may be down: health and metrics still say it
            log.warning("rules warning not written to the database: %s", exc)


def _replace(conn: Connection, instance: str, name: str, problem: RulesProblem | None) -> None:
    table = watcher_warnings
    mine = table.c.instance == instance
    if problem is None:
        conn.execute(delete(table).where(mine))
        return
    conn.execute(delete(table).where(mine, table.c.kind != problem.kind))
    values = {
        "instance_name": name,
        "message": problem.message,
        "since": problem.since,
        "updated_at": utcnow(),
    }
    if conn.execute(update(table).where(mine, table.c.kind == problem.kind).values(**values)).rowcount == 0:
        conn.execute(insert(table).values(instance=instance, kind=problem.kind, **values))


def warning_rows(conn: Connection) -> list[Any]:
    """Every instance's warnings (``status`` keeps those of live instances)."""
    return list(conn.execute(select(watcher_warnings).order_by(watcher_warnings.c.since)))
