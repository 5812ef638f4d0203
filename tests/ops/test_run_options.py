"""``foldertrack run --metrics-address … --log-format json`` as operators start it: a child process whose
JSON log lines parse, whose ``/metrics`` counts what it tracked, whose ``/healthz`` says it is healthy and
whose health rows carry its instance name."""

from __future__ import annotations

import json

import requests
from sqlalchemy import create_engine, select

from foldertrack.simulator import MailSpec
from foldertrack.state.database import upgrade_database
from foldertrack.state.schema import subscription_health
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.testing.process import WatcherProcess, write_config

MAILBOX = "alice@example.com"
RULES = f"""
mailboxes:
  - address: {MAILBOX}
    folders:
      Inbox/Tracked:
        record: null
"""


def _json_lines(process: WatcherProcess) -> list[dict]:
    return [json.loads(line) for line in process.log().splitlines() if line.strip()]


def _simulator_and_config(simulator_factory, tmp_path):
    """The simulator with one mailbox and its tracked folder, a current SQLite database, a config file."""
    sim = simulator_factory(heartbeat=1.0)
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    sim.add_mailbox(MAILBOX, password=USER_PASSWORD)
    sim.mailbox(MAILBOX).create_folder("Inbox/Tracked")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    database_url = f"sqlite:///{tmp_path / 'foldertrack.db'}"
    upgrade_database(database_url)
    config = write_config(
        tmp_path / "foldertrack.toml",
        endpoint=sim.url,
        database_url=database_url,
        rules_dir=tmp_path / "rules",
    )
    return sim, database_url, config


def test_run_serves_metrics_and_health_and_logs_json(simulator_factory, tmp_path):
    sim, database_url, config = _simulator_and_config(simulator_factory, tmp_path)
    process = WatcherProcess(config, tmp_path / "run.log", extra_env={"FOLDERTRACK_INSTANCE": "east"})
    process.start("--log-format", "json", "--metrics-address", "127.0.0.1:0")
    try:
        url = wait_until(
            lambda: next(
                (
                    line["message"].split()[2].removesuffix("/metrics,")
                    for line in _json_lines(process)
                    if line["message"].startswith("metrics on ")
                ),
                None,
            ),
            20,
            "the metrics listener's address in the log",
        )
        wait_until(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200, 20, "healthy")
        item = sim.deliver(MAILBOX, MailSpec(subject="counted", sender="dana@contoso.com", to=[MAILBOX]))
        sim.mailbox(MAILBOX).move_item(item, "Inbox/Tracked")

        def tracked_count() -> float:
            text = requests.get(f"{url}/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith("foldertrack_items_total") and 'outcome="tracked"' in line:
                    return float(line.rsplit(" ", 1)[-1])
            return 0.0

        wait_until(lambda: tracked_count() == 1.0, 20, "the tracked counter at 1")
        assert process.terminate() == 0
    finally:
        process.close()
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(subscription_health.c.instance)).scalar_one() == "east"
    engine.dispose()
    lines = _json_lines(process)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    (tracked,) = [line for line in lines if "tracked" in line["message"] and "counted" in line["message"]]
    assert tracked["mailbox"] == MAILBOX and tracked["folder"] == "Inbox/Tracked"
    assert lines[-1]["message"] == "stopped"


def test_sigterm_while_starting_is_a_clean_stop(simulator_factory, tmp_path):
    """A stop asked for during start-up (a deploy restarting a unit that is still starting) exits 0 once
    started, like any other stop, instead of dying by SIGTERM's default action (exit -15): the signal is sent
    the moment the watcher's construction logs its first warning (too few connections), before it exists."""
    _, _, config = _simulator_and_config(simulator_factory, tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[exchange]\n", "[exchange]\nmax_connections = 1\n"), encoding="utf-8")
    process = WatcherProcess(config, tmp_path / "run.log")
    process.start()
    try:
        wait_until(lambda: "max_connections = 1" in process.log(), 30, "the start-up warning", interval=0.002)
        assert process.terminate() == 0, process.log()
        assert "SIGTERM received" in process.log()
    finally:
        process.close()
