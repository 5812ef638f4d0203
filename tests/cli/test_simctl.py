"""``foldertrack simctl`` against a running simulator (``/control/mail``): deliver, move, copy, list."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from foldertrack.cli import main
from foldertrack.simulator import Simulator

ALICE = "alice@example.com"


@pytest.fixture
def sim(simulator_factory) -> Simulator:
    s = simulator_factory()
    s.add_mailbox(ALICE).create_folder("Inbox/Customers/Contoso")
    return s


def ctl(sim: Simulator, *args: str):
    result = CliRunner().invoke(main, ["simctl", *args, "--url", sim.url])
    assert "Traceback" not in result.output
    return result


def test_deliver_move_copy_and_list(sim):
    delivered = ctl(sim, "deliver", ALICE, "--subject", "Quote", "--message-id", "<q1@example.com>")
    assert delivered.exit_code == 0, delivered.output
    item_id = delivered.stdout.strip()
    assert sim.mailbox(ALICE).item_ids("Inbox") == [item_id]

    moved = ctl(sim, "move", ALICE, "Inbox/Customers/Contoso", "--subject", "Quote", "--json")
    assert moved.exit_code == 0, moved.output
    new_id = json.loads(moved.stdout)["item_id"]
    assert new_id != item_id and sim.mailbox(ALICE).item_ids("Inbox/Customers/Contoso") == [new_id]
    assert sim.mailbox(ALICE).item_ids("Inbox") == []

    copied = ctl(sim, "copy", ALICE, "Inbox", "--item-id", new_id)
    assert copied.exit_code == 0, copied.output
    listed = ctl(sim, "items", ALICE, "--folder", "Inbox", "--json")
    (item,) = json.loads(listed.stdout)["items"]
    assert item["subject"] == "Quote" and item["message_id"] == "<q1@example.com>"
    assert "Inbox/Customers/Contoso" in ctl(sim, "folders", ALICE).stdout.splitlines()


def test_deliver_into_a_folder_like_an_inbox_rule(sim):
    result = ctl(sim, "deliver", ALICE, "--subject", "Filed", "--folder", "Inbox/Customers/Contoso")
    assert result.exit_code == 0
    assert [i.subject for i in sim.mailbox(ALICE).items("Inbox/Customers/Contoso")] == ["Filed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deliver", "ghost@example.com", "--subject", "x"], "simulator: ErrorNonExistentMailbox"),
        (
            ["move", ALICE, "Inbox/Nowhere", "--subject", "nothing"],
            "simulator: no item with subject 'nothing'",
        ),
    ],
)
def test_errors_are_one_line(sim, args, message):
    result = ctl(sim, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")


def test_move_needs_item_id_or_subject(sim):
    result = ctl(sim, "move", ALICE, "Inbox")
    assert result.exit_code == 2 and "give either --item-id or --subject" in result.stderr


def test_unreachable_simulator(tmp_path):
    result = CliRunner().invoke(main, ["simctl", "folders", ALICE, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the simulator at http://127.0.0.1:9/control/mail: ConnectionError" in result.stderr


def test_control_endpoint_rejects_unknown_actions(sim):
    base = sim.url.removesuffix("/EWS/Exchange.asmx")
    response = requests.post(base + "/control/mail", json={"action": "explode", "mailbox": ALICE}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"].startswith("unknown action 'explode'")
