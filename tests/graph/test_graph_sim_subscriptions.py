"""Change notification subscriptions against the simulator, received by foldertrack's own listener:
validation handshake, clientState, notifications per folder, lifecycle events, renewal, deletion, faults."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from foldertrack.simulator.mime import MailSpec
from foldertrack.sources.graph.notifications import NotificationListener
from foldertrack.testing.harness import wait_until

STATE = "s3cret-client-state"


class Inbox:
    """What a listener received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changes: list[tuple[str, str, str]] = []
        self.lifecycle: list[tuple[str, str]] = []

    def on_change(self, sub_id: str, change: str, message_id: str) -> None:
        with self.lock:
            self.changes.append((sub_id, change, message_id))

    def on_lifecycle(self, sub_id: str, event: str) -> None:
        with self.lock:
            self.lifecycle.append((sub_id, event))


@pytest.fixture
def receiver():
    got = Inbox()
    with NotificationListener(STATE, got.on_change, got.on_lifecycle) as listener:
        yield got, listener


def _expiry(minutes: float = 60) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _subscribe(graph, session, listener, folder="inbox", lifecycle_url=None, **extra):
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": listener.url,
        "resource": f"users/{graph.mailbox}/mailFolders('{folder}')/messages",
        "expirationDateTime": _expiry(),
        "clientState": STATE,
        **extra,
    }
    if lifecycle_url:
        body["lifecycleNotificationUrl"] = lifecycle_url
    return session.post(f"{graph.base}/subscriptions", json=body)


def test_handshake_then_notifications_for_the_folder_only(graph, receiver):
    got, listener = receiver
    box = graph.sim.mailbox(graph.mailbox)
    box.create_folder("Inbox/Customers")
    session = graph.session()
    created = _subscribe(graph, session, listener)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert listener.validations == 1
    assert sub["changeType"] == "created,updated,deleted" and sub["clientState"] == STATE
    box.deliver(MailSpec(subject="elsewhere", to=[graph.mailbox]), folder="Inbox/Customers")
    box.deliver(MailSpec(subject="here", to=[graph.mailbox]))
    wait_until(lambda: got.changes, 10, "a notification")
    [message] = session.get(graph.user("mailFolders/inbox/messages")).json()["value"]
    assert got.changes == [(sub["id"], "created", message["id"])]
    box.move_item(box.item_ids("Inbox")[0], "Inbox/Customers")
    wait_until(lambda: len(got.changes) == 2, 10, "the move's notification")
    assert got.changes[1] == (sub["id"], "deleted", message["id"])  # immutable: the same id


def test_failed_handshake_is_a_validation_error(graph):
    session = graph.session()
    body = {
        "changeType": "created",
        "notificationUrl": "http://127.0.0.1:9/nowhere",
        "resource": f"users/{graph.mailbox}/mailFolders('inbox')/messages",
        "expirationDateTime": _expiry(),
    }
    answer = session.post(f"{graph.base}/subscriptions", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "ValidationError"
    body["notificationUrl"] = "http://example.com/hook"  # not https, not loopback
    assert session.post(f"{graph.base}/subscriptions", json=body).status_code == 400
    body.update(notificationUrl="https://127.0.0.1:9/x", expirationDateTime=_expiry(11000))
    too_long = session.post(f"{graph.base}/subscriptions", json=body)
    assert too_long.status_code == 400 and "10080 minutes" in too_long.json()["error"]["message"]


def test_wrong_client_state_is_rejected_by_the_listener(graph):
    got = Inbox()
    with NotificationListener("another-secret", got.on_change, got.on_lifecycle) as listener:
        assert _subscribe(graph, graph.session(), listener).status_code == 201
        graph.sim.mailbox(graph.mailbox).deliver(MailSpec(subject="x", to=[graph.mailbox]))
        wait_until(lambda: listener.rejected, 10, "a rejected notification")
    assert got.changes == []


def test_lifecycle_reauthorization_and_removal(graph, receiver):
    got, listener = receiver
    session = graph.session()
    sub = _subscribe(graph, session, listener, lifecycle_url=listener.url).json()
    graph.sim.graph.lifecycle(sub["id"], "reauthorizationRequired")
    wait_until(lambda: got.lifecycle, 10, "reauthorizationRequired")
    assert session.post(f"{graph.base}/subscriptions/{sub['id']}/reauthorize").status_code == 204
    graph.sim.graph.lifecycle(sub["id"], "subscriptionRemoved")
    wait_until(lambda: len(got.lifecycle) == 2, 10, "subscriptionRemoved")
    assert got.lifecycle == [(sub["id"], "reauthorizationRequired"), (sub["id"], "subscriptionRemoved")]
    gone = session.get(f"{graph.base}/subscriptions/{sub['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceNotFound"


def test_undeliverable_notifications_give_a_missed_lifecycle_event(graph, receiver):
    got, lifecycle_listener = receiver
    lost = Inbox()
    session = graph.session()
    with NotificationListener(STATE, lost.on_change, lost.on_lifecycle) as doomed:
        sub = _subscribe(graph, session, doomed, lifecycle_url=lifecycle_listener.url).json()
    graph.sim.mailbox(graph.mailbox).deliver(MailSpec(subject="into the void", to=[graph.mailbox]))
    wait_until(lambda: got.lifecycle, 10, "a missed lifecycle notification")
    assert got.lifecycle == [(sub["id"], "missed")] and lost.changes == []


def test_renew_list_delete(graph, receiver):
    got, listener = receiver
    session = graph.session()
    sub = _subscribe(graph, session, listener).json()
    later = _expiry(4000)
    renewed = session.patch(f"{graph.base}/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert renewed.status_code == 200
    assert renewed.json()["expirationDateTime"][:19] == later[:19]
    assert [s["id"] for s in session.get(f"{graph.base}/subscriptions").json()["value"]] == [sub["id"]]
    assert session.delete(f"{graph.base}/subscriptions/{sub['id']}").status_code == 204
    assert session.get(f"{graph.base}/subscriptions").json()["value"] == []
    second = _subscribe(graph, session, listener, folder="sentitems").json()
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(MailSpec(subject="inbox", to=[graph.mailbox]))  # the deleted subscription says nothing
    box.deliver(MailSpec(subject="sent", to=[graph.mailbox]), folder="Sent Items")
    wait_until(lambda: got.changes, 10, "the sent items notification")
    assert [c[0] for c in got.changes] == [second["id"]]


def test_dropped_notifications_and_expired_subscriptions(graph, receiver):
    got, listener = receiver
    session = graph.session()
    sub = _subscribe(graph, session, listener).json()
    box = graph.sim.mailbox(graph.mailbox)
    graph.sim.graph.faults.drop_notifications(1)
    box.deliver(MailSpec(subject="lost", to=[graph.mailbox]))
    box.deliver(MailSpec(subject="kept", to=[graph.mailbox]))
    wait_until(lambda: got.changes, 10, "the second notification")
    assert len(got.changes) == 1 and graph.sim.graph.faults.dropped_notifications == 1
    assert graph.sim.graph.expire_subscriptions() == 1
    assert session.get(f"{graph.base}/subscriptions/{sub['id']}").status_code == 404


def test_unknown_subscription_ids_are_resource_not_found(graph, receiver):
    """GET, PATCH, DELETE and reauthorize of an id Graph does not know (never made, deleted, expired) all
    answer 404 ``ResourceNotFound``; a renewal past 10,080 minutes is refused and leaves the expiry alone."""
    _, listener = receiver
    session = graph.session()
    sub = _subscribe(graph, session, listener).json()
    too_far = session.patch(
        f"{graph.base}/subscriptions/{sub['id']}", json={"expirationDateTime": _expiry(10100)}
    )
    assert too_far.status_code == 400 and "10080 minutes" in too_far.json()["error"]["message"]
    assert (
        session.get(f"{graph.base}/subscriptions/{sub['id']}").json()["expirationDateTime"]
        == sub["expirationDateTime"]
    )
    assert session.delete(f"{graph.base}/subscriptions/{sub['id']}").status_code == 204
    for sub_id in (sub["id"], "5b2d9bd0-1a0c-4b9e-9a3e-000000000000"):
        url = f"{graph.base}/subscriptions/{sub_id}"
        for answer in (
            session.get(url),
            session.patch(url, json={"expirationDateTime": _expiry()}),
            session.delete(url),
            session.post(f"{url}/reauthorize"),
        ):
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "ResourceNotFound"
