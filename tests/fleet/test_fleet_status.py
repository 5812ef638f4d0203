"""``fleet_status``: instances alive / stale / stopped and mailboxes owned / stale / free, on both backends,
so ``foldertrack status`` never shows a dead instance's mailboxes as streaming."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from foldertrack.fleet import fleet_status
from foldertrack.state.database import open_database
from foldertrack.testing.harness import wait_until
from tests.fleet.conftest import mailbox_names

TTL = 1.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def states(engine: Engine) -> dict[str, str]:
    return {m: s["state"] for m, s in fleet_status(engine)["mailboxes"].items()}


def test_status_follows_an_instance_through_death_takeover_and_stop(engine, make_keeper):
    boxes = mailbox_names(2)
    a = make_keeper(engine, "a", boxes, ttl=TTL, claim_interval=0.05)
    wait_until(lambda: len(a.owned()) == 2, 10, "a owning both")

    status = fleet_status(engine)
    (inst,) = status["instances"]
    assert (inst["name"], inst["state"], inst["leases"], inst["stale_since"]) == ("a", "alive", 2, None)
    assert inst["pid"] > 0 and inst["host"] and inst["started_at"] <= inst["heartbeat_at"]
    box = status["mailboxes"][boxes[0]]
    assert (box["state"], box["owner"], box["owner_name"], box["owner_alive"]) == ("owned", a.id, "a", True)

    a.stop(release=False)  # killed
    status = wait_until(
        lambda: (s := fleet_status(engine))["instances"][0]["leases"] == 0 and s,
        TTL + 2,
        "a's leases expiring",
    )
    assert {m["state"] for m in status["mailboxes"].values()} == {"stale"}
    (inst,) = status["instances"]
    assert inst["state"] == "stale" and inst["leases"] == 0
    box = status["mailboxes"][boxes[0]]
    assert (box["owner"], box["last_owner"], box["owner_alive"]) == (None, a.id, False)
    assert box["stale_since"] == inst["stale_since"]

    b = make_keeper(engine, "b", boxes, ttl=TTL, claim_interval=0.05)  # SQLite: takes over the dead one
    wait_until(lambda: len(b.owned()) == 2, TTL + 3, "b owning both")
    status = fleet_status(engine)
    assert {m["owner"] for m in status["mailboxes"].values()} == {b.id}
    assert {i["name"]: i["leases"] for i in status["instances"]} == {"a": 0, "b": 2}

    b.stop()
    status = fleet_status(engine)
    assert set(states(engine).values()) == {"free"}
    assert next(i for i in status["instances"] if i["name"] == "b")["state"] == "stopped"


def test_a_released_mailbox_is_free_not_stale(engine, make_keeper):
    boxes = mailbox_names(3)
    a = make_keeper(engine, "a", boxes, ttl=TTL, claim_interval=0.05)
    wait_until(lambda: len(a.owned()) == 3, 10, "a owning all 3")

    a.set_mailboxes(boxes[:1])  # a rule removed two mailboxes
    expected = {boxes[0]: "owned", boxes[1]: "free", boxes[2]: "free"}
    wait_until(lambda: states(engine) == expected, 5, "a handing two back")  # on_lost first, then released
    assert set(a.owned()) == {boxes[0]}
