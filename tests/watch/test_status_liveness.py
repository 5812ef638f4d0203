"""``status`` knows who is alive: after ``kill -9`` of the watcher its mailboxes are ``stale since …``, never
``streaming``; when one of two watchers exits, the other's mailboxes never show ``stopped``. Real
``foldertrack run`` child processes, the simulator, and ``foldertrack status`` through the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from foldertrack.ops.status import collect_status
from foldertrack.state.database import open_database
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.testing.process import WatcherProcess, write_config
from tests.watch.test_status import run_status, status_json

pytestmark = pytest.mark.slow

TTL = 3.0


def rules(boxes: list[str]) -> str:
    return "mailboxes:\n  - addresses: [{}]\n    folders:\n      Inbox/CRM:\n        record: null\n".format(
        ", ".join(boxes)
    )


@pytest.fixture
def spawn(simulator_factory, tmp_path: Path) -> Iterator:
    """``spawn(database_url, boxes, name)`` → a started ``foldertrack run`` child watching ``boxes``."""
    sim = simulator_factory(heartbeat=1.0)
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    procs: list[WatcherProcess] = []
    added: set[str] = set()

    def start(database_url: str, boxes: list[str], name: str) -> WatcherProcess:
        for box in boxes:
            if box not in added:  # a second instance watches the same mailboxes
                added.add(box)
                sim.add_mailbox(box, password=USER_PASSWORD)
                sim.mailbox(box).create_folder("Inbox/CRM")
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "rules.yaml").write_text(rules(boxes), encoding="utf-8")
        config = write_config(
            tmp_path / f"{name}.toml",
            endpoint=sim.url,
            database_url=database_url,
            rules_dir=rules_dir,
            watch={"lease_ttl": f"{TTL:g}s"},
        )
        proc = WatcherProcess(config, tmp_path / f"{name}.log", extra_env={"FOLDERTRACK_INSTANCE": name})
        procs.append(proc.start())
        return proc

    yield start
    for proc in procs:
        proc.close()


def modes(engine) -> dict[str, tuple[str, str | None]]:
    return {m["mailbox"]: (m["mode"], m["instance"]) for m in collect_status(engine)["mailboxes"]}


def test_kill_9_leaves_stale_mailboxes_not_streaming(spawn, sqlite_url):
    boxes = ["alice@example.com", "bob@example.com"]
    engine = open_database(sqlite_url)
    try:
        watcher = spawn(sqlite_url, boxes, "solo")
        wait_until(
            lambda: (
                set(modes(engine).values()) == {("streaming", "solo")} and len(modes(engine)) == len(boxes)
            ),
            30,
            "both mailboxes streaming",
        )
        watcher.kill9()
        report = wait_until(
            lambda: (r := status_json(sqlite_url)) and {m["mode"] for m in r["mailboxes"]} == {"stale"} and r,
            TTL + 10,
            "the dead watcher's mailboxes marked stale",
        )
        for box in report["mailboxes"]:
            assert box["stale_since"] and box["instance"] == "solo"
        (instance,) = report["instances"]
        assert (instance["name"], instance["state"]) == ("solo", "stale") and instance["stale_since"]
        assert report["totals"]["modes"] == {"stale": 2}
        text = run_status(sqlite_url)
        assert "streaming" not in text
        assert "stale since " in text and "its watcher (instance solo) stopped heartbeating" in text
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_one_of_two_watchers_exiting_never_shows_the_others_mailboxes_stopped(spawn, postgres_url):
    boxes = [f"user{n}@example.com" for n in range(4)]
    engine = open_database(postgres_url)
    try:
        a = spawn(postgres_url, boxes, "a")
        wait_until(lambda: len(modes(engine)) == len(boxes), 30, "a starting")
        spawn(postgres_url, boxes, "b")
        split = wait_until(
            lambda: (
                (m := modes(engine))
                and {i for _, i in m.values()} == {"a", "b"}
                and {mode for mode, _ in m.values()} == {"streaming"}
                and m
            ),
            60,
            "the mailboxes split over a and b, all streaming",
        )
        b_boxes = [box for box, (_, inst) in split.items() if inst == "b"]

        seen: list[dict] = []
        done = threading.Event()

        def watch() -> None:  # status, sampled continuously while a exits
            while not done.is_set():
                seen.append(modes(engine))

        sampler = threading.Thread(target=watch)
        sampler.start()
        try:
            assert a.terminate() == 0
            wait_until(
                lambda: set(modes(engine).values()) == {("streaming", "b")}, 30, "b streaming every mailbox"
            )
        finally:
            done.set()
            sampler.join()
        assert len(seen) > 5
        for sample in seen:
            for box in b_boxes:
                assert sample[box] == ("streaming", "b"), sample
        report = status_json(postgres_url)
        states = {i["name"]: i["state"] for i in report["instances"]}
        assert states == {"a": "stopped", "b": "alive"}
    finally:
        engine.dispose()
