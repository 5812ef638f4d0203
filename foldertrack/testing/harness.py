"""A whole foldertrack on the simulator, in-process: used by the end-to-end tests, the demo and benchmarks.

``Harness`` starts the simulator, writes rules, upgrades a SQLite (or given) database and runs a real
``Watcher`` against the simulator over HTTP through exchangelib, impersonating each mailbox with a
service account, exactly as production does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.schema import activities, activity_parties
from foldertrack.watch.daemon import Watcher, WatchOptions
from foldertrack.watch.observer import WatchObserver

SERVICE_ACCOUNT = "svc-foldertrack@example.com"
SERVICE_PASSWORD = "service-secret-pw"
USER_PASSWORD = "user-pw"


class Harness:
    """Simulator + rules dir + database + watcher. Use as a context manager; ``stop()`` is idempotent."""

    def __init__(self, workdir: Path, *, simulator=None, database_url: str | None = None, **options: Any):
        from foldertrack.simulator import Simulator

        self.workdir = Path(workdir)
        self.rules_dir = self.workdir / "rules"
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{self.workdir / 'foldertrack.db'}"
        self._own_sim = simulator is None
        # keep-alives every second: well inside the 5 s stall timeout of options_for_tests()
        self.sim = simulator or Simulator(host="127.0.0.1", port=0, heartbeat=1.0)
        self.options = options
        self.watcher: Watcher | None = None
        self.engine = None

    # -- set-up ----------------------------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        if self._own_sim:
            self.sim.start()
        self.sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
        upgrade_database(self.database_url)
        self.engine = open_database(self.database_url)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_mailbox(self, address: str) -> Any:
        self.sim.add_mailbox(address, password=USER_PASSWORD)
        return self.sim.mailbox(address)

    def write_rules(self, text: str, name: str = "rules.yaml") -> Path:
        path = self.rules_dir / name
        path.write_text(text, encoding="utf-8")
        return path

    def import_records(self, csv_text: str) -> None:
        from foldertrack.state.records import RecordDirectory

        path = self.workdir / "records.csv"
        path.write_text(csv_text, encoding="utf-8")
        RecordDirectory(self.engine).import_csv(path)

    def start_watcher(
        self,
        *,
        observer: WatchObserver | None = None,
        sink: Any = None,
        feedback: Any = None,
        ready_timeout: float = 20.0,
        exchange: ExchangeSettings | None = None,
        **overrides: Any,
    ) -> Watcher:
        """Start a watcher with the harness's options (``overrides`` win); wait until it is ready.

        ``exchange``: how to connect instead of the service account's Basic auth (e.g. OAuth2)."""
        options = WatchOptions(rules_dir=self.rules_dir, **{**self.options, **overrides})
        settings = exchange or ExchangeSettings(
            endpoint=self.sim.url,
            auth="basic",
            username=SERVICE_ACCOUNT,
            password=SERVICE_PASSWORD,
            access="impersonation",
            version="Exchange2016",
        )
        connector = ExchangeConnector(settings, max_connections=options.workers + 8)
        self.watcher = Watcher(
            options,
            self.engine,
            connector,
            sink or SqlActivitySink(self.engine),
            observer=observer,
            feedback=feedback,
        )
        self.watcher.start()
        if not self.watcher.ready.wait(ready_timeout):
            raise TimeoutError("watcher did not become ready")
        return self.watcher

    def stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def stop(self) -> None:
        self.stop_watcher()
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        if self._own_sim:
            self.sim.stop()

    # -- observing -------------------------------------------------------------------------------------------

    def activities(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r._mapping) for r in conn.execute(select(activities).order_by(activities.c.tracked_at))
            ]

    def activity(self, subject: str) -> dict[str, Any] | None:
        found = [a for a in self.activities() if a["subject"] == subject]
        assert len(found) <= 1, f"{len(found)} activities for {subject!r}"
        return found[0] if found else None

    def parties(self, key: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    select(activity_parties)
                    .where(activity_parties.c.activity_key == key)
                    .order_by(activity_parties.c.position)
                )
            ]

    def wait_for(self, condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
        """Wait until ``condition()`` is truthy (polling the database is the observable effect)."""
        return wait_until(condition, timeout, what)

    def wait_tracked(self, subject: str, timeout: float = 15.0, **expected: Any) -> dict[str, Any]:
        def check():
            a = self.activity(subject)
            return a if a and all(a.get(k) == v for k, v in expected.items()) else None

        return self.wait_for(check, timeout, f"activity {subject!r} with {expected}")

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until the watcher has nothing queued or running."""
        assert self.watcher is not None
        if not self.watcher.wait_idle(timeout):
            raise AssertionError("watcher did not settle")


def wait_until(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition", interval: float = 0.01
) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_tracked_where_they_ended(
    engine, expected: dict[str, str | None], timeout: float = 60.0, log: Callable[[], str] | None = None
) -> None:
    """Exactly once, nothing lost: wait until the activities are ``expected`` (subject → regarding id),
    then check there is one activity and one present ledger row per mail. On timeout say which mails are
    not where they ended (and ``log()``, e.g. a child process's log)."""
    from sqlalchemy import func

    from foldertrack.state.schema import ledger

    def regarding() -> dict:
        with engine.connect() as conn:
            return dict(conn.execute(select(activities.c.subject, activities.c.regarding_id)).all())

    try:
        wait_until(lambda: regarding() == expected, timeout, "every mail tracked where it ended")
    except AssertionError:
        rows = regarding()
        diff = {s: (rows.get(s), r) for s, r in expected.items() if rows.get(s) != r}
        raise AssertionError(f"not where they ended (have, want): {diff}\n{log() if log else ''}") from None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(activities)).scalar_one() == len(expected)
        present = conn.execute(
            select(ledger.c.mail_key, func.count())
            .where(ledger.c.state == "present")
            .group_by(ledger.c.mail_key)
        ).all()
    assert len(present) == len(expected) and all(n == 1 for _, n in present)


def options_for_tests(**overrides: Any) -> dict[str, Any]:
    base = dict(
        poll_interval=1.0,
        safety_sync_interval=3600.0,
        workers=3,
        debounce=0.02,
        max_attempts=3,
        stream_timeout_minutes=1,
        stream_stall_timeout=5.0,
    )
    return {**base, **overrides}


__all__ = ["SERVICE_ACCOUNT", "Harness", "options_for_tests", "wait_until"]
