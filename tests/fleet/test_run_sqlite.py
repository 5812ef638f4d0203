"""``foldertrack run`` on SQLite: a second watcher on the same database refuses to start, naming the
database file and the live one; after ``kill -9`` of the first, it starts and takes the mailboxes over."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from foldertrack.fleet import fleet_status
from foldertrack.state.database import open_database
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.testing.process import WatcherProcess, write_config

pytestmark = pytest.mark.slow

BOX = "alice@example.com"
RULES = f"mailboxes:\n  - addresses: [{BOX}]\n    folders:\n      Inbox/CRM:\n        record: null\n"


def test_a_second_run_on_one_sqlite_database_is_refused_until_the_first_is_dead(
    simulator_factory, sqlite_url, tmp_path
):
    sim = simulator_factory(heartbeat=1.0)
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    sim.add_mailbox(BOX, password=USER_PASSWORD)
    sim.mailbox(BOX).create_folder("Inbox/CRM")
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES, encoding="utf-8")
    config = write_config(
        tmp_path / "ft.toml", endpoint=sim.url, database_url=sqlite_url, rules_dir=rules_dir
    )
    engine = open_database(sqlite_url)
    first = WatcherProcess(config, tmp_path / "first.log", extra_env={"FOLDERTRACK_INSTANCE": "first"})
    second = WatcherProcess(config, tmp_path / "second.log", extra_env={"FOLDERTRACK_INSTANCE": "second"})
    try:
        first.start()
        wait_until(
            lambda: fleet_status(engine)["mailboxes"].get(BOX, {}).get("state") == "owned", 30, "first owning"
        )

        second.start()
        assert second.proc.wait(30) == 75
        refusal = second.log()
        assert str(make_url(sqlite_url).database) in refusal
        assert "instance first on host" in refusal and f"pid {first.pid}" in refusal
        assert first.running()

        first.kill9()
        second.start()
        wait_until(
            lambda: (
                fleet_status(engine)["mailboxes"][BOX]["owner_name"] == "second"
                and fleet_status(engine)["mailboxes"][BOX]["state"] == "owned"
            ),
            30,
            "second taking over at once (the first's process is gone)",
        )
        assert second.terminate() == 0
        assert fleet_status(engine)["mailboxes"][BOX]["state"] == "free"
    finally:
        first.close()
        second.close()
        engine.dispose()
