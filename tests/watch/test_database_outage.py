"""The state database locked or gone for a while, and items that keep failing.

Items wait while the database is unavailable and are tracked exactly once when it is back; an item the
sink keeps rejecting is dead-lettered after ``max_attempts`` with its reason, shows in ``status``, does not
hold its folder back, and ``foldertrack retry`` replays it once the cause is fixed.
"""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, select, text

from foldertrack.cli import main
from foldertrack.errors import PermanentSinkError
from foldertrack.simulator import MailSpec
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state.schema import dead_letters
from foldertrack.testing.harness import Harness, options_for_tests
from tests.watch.conftest import ALICE, RECORDS

RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
"""
FOLDER = "Inbox/Customers/Contoso"


def _start(h: Harness, **watcher_kwargs) -> None:
    h.import_records(RECORDS)
    h.add_mailbox(ALICE).create_folder(FOLDER)
    h.write_rules(RULES)
    h.start_watcher(**watcher_kwargs)


def _file(h: Harness, subjects: list[str]) -> None:
    for subject in subjects:
        item = h.sim.deliver(
            ALICE, MailSpec(subject=subject, sender="dana@contoso.com", to=[ALICE], body=subject)
        )
        h.sim.mailbox(ALICE).move_item(item, FOLDER)


def _subjects(h: Harness) -> list[str]:
    return sorted(a["subject"] for a in h.activities())


def test_sqlite_locked_by_another_writer_items_wait_then_track_once(tmp_path):
    with Harness(tmp_path, **options_for_tests()) as h:
        _start(h)
        _file(h, ["before lock"])
        h.wait_tracked("before lock")
        locker = create_engine(h.database_url, connect_args={"timeout": 30})
        with locker.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")  # no other connection can read or write now
            _file(h, [f"during lock {n}" for n in range(5)])
            h.wait_for(
                lambda: h.watcher.dispatcher.stats.runs > 0 and not h.watcher.dispatcher.idle(),
                10,
                "a catch-up waiting on the lock",
            )
            conn.exec_driver_sql("COMMIT")
        locker.dispose()
        h.wait_for(lambda: len(h.activities()) == 6, 30, "the mails filed during the lock")
        h.settle()
        assert _subjects(h) == ["before lock", *(f"during lock {n}" for n in range(5))]


@pytest.mark.postgres
def test_postgres_connections_killed_mid_burst_nothing_lost_or_doubled(tmp_path, empty_postgres_url):
    """Every connection of the watcher is terminated (as a database restart does) while mails arrive."""
    app = f"ft-outage-{uuid.uuid4().hex[:8]}"
    url = make_url(empty_postgres_url).update_query_dict({"application_name": app})
    with Harness(
        tmp_path, database_url=url.render_as_string(hide_password=False), **options_for_tests()
    ) as h:
        _start(h)
        admin = create_engine(empty_postgres_url, isolation_level="AUTOCOMMIT")
        killed = 0
        try:
            for round_no in range(5):
                _file(h, [f"burst {round_no} mail {n}" for n in range(6)])
                with admin.connect() as conn:
                    killed += conn.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = :app"
                        ),
                        {"app": app},
                    ).scalar_one()
        finally:
            admin.dispose()
        assert killed > 0, "no watcher connection was terminated; the test proved nothing"
        h.wait_for(lambda: len(h.activities()) == 30, 30, "all 30 mails tracked")
        h.settle()
        expected = sorted(f"burst {r} mail {n}" for r in range(5) for n in range(6))
        assert _subjects(h) == expected  # activities' primary key is the mail key: a double would be a dup


class FlakySink(SqlActivitySink):
    """The SQL sink, except it rejects mails whose subject says "poison" until ``fixed`` (as a CRM would
    reject a record it cannot store). It shares the state database, so it runs inside the sync transaction
    and its rejection is a sync dead letter; an external sink's rejection is a delivery dead letter
    (``tests/delivery/test_delivery.py``)."""

    def __init__(self, engine):
        super().__init__(engine)
        self.fixed = False
        self.rejected = 0

    def upsert(self, activity, conn=None):
        if "poison" in (activity.subject or "") and not self.fixed:
            self.rejected += 1
            raise PermanentSinkError(f"CRM rejected {activity.subject!r}: field too long")
        return super().upsert(activity, conn)


def test_poison_item_is_dead_lettered_shown_in_status_and_replayed_by_retry(tmp_path):
    with Harness(tmp_path, **options_for_tests(max_attempts=3)) as h:
        sink = FlakySink(h.engine)
        _start(h, sink=sink)
        _file(h, ["good one", "poison pill", "good two"])
        h.wait_tracked("good one")
        h.wait_tracked("good two")

        def dead():
            with h.engine.connect() as conn:
                return conn.execute(select(dead_letters).where(dead_letters.c.status == "dead")).all()

        rows = h.wait_for(dead, 30, "the poison mail dead-lettered")
        assert sink.rejected == 3 and len(rows) == 1
        assert rows[0].attempts == 3 and "field too long" in rows[0].error
        assert rows[0].subject == "poison pill"
        _file(h, ["after the bad one"])  # the folder is not held back by its dead letter
        h.wait_tracked("after the bad one")

        config = tmp_path / "foldertrack.toml"
        config.write_text(f'[database]\nurl = "{h.database_url}"\n', encoding="utf-8")
        shown = CliRunner().invoke(main, ["status", "--json", "--config", str(config)])
        assert shown.exit_code == 0, shown.output
        status = json.loads(shown.output)
        assert status["totals"]["dead_letters"] == 1
        assert status["dead_letters"][0]["subject"] == "poison pill"
        assert "field too long" in status["dead_letters"][0]["error"]

        sink.fixed = True
        replay = CliRunner().invoke(main, ["retry", "--config", str(config)])
        assert replay.exit_code == 0, replay.output
        assert "1 dead letter(s) queued for replay" in replay.output
        h.wait_tracked("poison pill", regarding_id="acc-contoso")
        h.wait_for(lambda: not dead(), 10, "the dead letter cleared")
        h.settle()
        assert _subjects(h) == ["after the bad one", "good one", "good two", "poison pill"]
