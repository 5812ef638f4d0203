"""The Graph simulator's JSON checked against Microsoft's published v1.0 metadata (CSDL): every property
exists on the entity type (or a base type) with a compatible type. Skips when ../shared/graph is absent."""

from __future__ import annotations

import datetime as dt
import threading

from foldertrack.simulator.mime import MailSpec
from foldertrack.sources.graph.notifications import NotificationListener
from foldertrack.testing.harness import wait_until

MAIL = MailSpec(
    subject="Schema",
    sender="Bob <bob@fabrikam.example>",
    to=["alice@contoso.example"],
    cc=["c@fabrikam.example"],
    body="plain",
    html_body="<p>html</p>",
    attachments=[("a.bin", "application/octet-stream", b"\x00\x01")],
)
ALL_MESSAGE = (
    "id,createdDateTime,lastModifiedDateTime,changeKey,categories,receivedDateTime,sentDateTime,hasAttachments,"
    "internetMessageId,subject,bodyPreview,importance,parentFolderId,conversationId,conversationIndex,"
    "isDeliveryReceiptRequested,isReadReceiptRequested,isRead,isDraft,webLink,inferenceClassification,body,"
    "uniqueBody,sender,from,toRecipients,ccRecipients,bccRecipients,replyTo,flag,internetMessageHeaders"
)


def _assert_conforms(csdl, type_name, values):
    problems = [p for value in values for p in csdl.check(type_name, value)]
    assert not problems, "\n".join(problems[:20])


def test_messages_attachments_and_folders_conform(graph, graph_csdl):
    box = graph.sim.mailbox(graph.mailbox)
    box.create_folder("Inbox/Sub")
    box.deliver(MAIL)
    session = graph.session()
    folders = session.get(graph.user("mailFolders")).json()["value"]
    folders += [session.get(graph.user("mailFolders/inbox")).json()]
    folders += session.get(graph.user("mailFolders/inbox/childFolders")).json()["value"]
    _assert_conforms(graph_csdl, "mailFolder", folders)
    default = session.get(graph.user("mailFolders/inbox/messages"), params={"$expand": "attachments"}).json()
    everything = session.get(graph.user("mailFolders/inbox/messages"), params={"$select": ALL_MESSAGE}).json()
    messages = default["value"] + everything["value"]
    assert "contentBytes" in messages[0]["attachments"][0] and "internetMessageHeaders" in messages[1]
    _assert_conforms(graph_csdl, "message", messages)
    message_id = messages[0]["id"]
    attachments = session.get(graph.user(f"messages/{message_id}/attachments")).json()["value"]
    attachments.append(
        session.get(graph.user(f"messages/{message_id}/attachments/{attachments[0]['id']}")).json()
    )
    _assert_conforms(graph_csdl, "attachment", attachments)
    patched = session.patch(graph.user(f"messages/{message_id}"), json={"categories": ["x"], "isRead": True})
    _assert_conforms(graph_csdl, "message", [patched.json()])


def test_delta_entries_conform(graph, graph_csdl):
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(MAIL)
    session = graph.session()
    delta = session.get(graph.user("mailFolders/inbox/messages/delta")).json()["value"]
    folders = session.get(graph.user("mailFolders/delta")).json()["value"]
    _assert_conforms(graph_csdl, "message", delta)
    _assert_conforms(graph_csdl, "mailFolder", folders)


def test_subscriptions_and_notifications_conform(graph, graph_csdl):
    bodies: list[dict] = []
    lock = threading.Lock()

    class Recording(NotificationListener):
        def handle(self, body):
            with lock:
                bodies.append(body)
            super().handle(body)

    with Recording("state", lambda *a: None, lambda *a: None) as listener:
        session = graph.session()
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        created = session.post(
            f"{graph.base}/subscriptions",
            json={
                "changeType": "created,updated",
                "notificationUrl": listener.url,
                "lifecycleNotificationUrl": listener.url,
                "resource": f"users/{graph.mailbox}/mailFolders('inbox')/messages",
                "expirationDateTime": expiry,
                "clientState": "state",
            },
        ).json()
        fetched = session.get(f"{graph.base}/subscriptions/{created['id']}").json()
        _assert_conforms(graph_csdl, "subscription", [created, fetched])
        graph.sim.mailbox(graph.mailbox).deliver(MAIL)
        wait_until(lambda: bodies, 10, "a notification")
        graph.sim.graph.lifecycle(created["id"], "missed")
        wait_until(lambda: len(bodies) == 2, 10, "a lifecycle notification")
    problems = [p for body in bodies for p in graph_csdl.check("changeNotificationCollection", body)]
    assert not problems, problems
    assert bodies[1]["value"][0]["lifecycleEvent"] == "missed"


def test_the_csdl_reader_catches_what_it_should(graph_csdl):
    ok = {"id": "x", "displayName": "Inbox", "childFolderCount": 1, "isHidden": False}
    assert graph_csdl.check("mailFolder", ok) == []
    assert graph_csdl.check("mailFolder", {**ok, "displayname": "x"})  # wrong case: no such property
    assert graph_csdl.check("mailFolder", {**ok, "childFolderCount": "1"})  # string for Int32
    assert graph_csdl.check("message", {"id": "x", "importance": "urgent"})  # not an enum member
    assert graph_csdl.check("message", {"id": "x", "receivedDateTime": "yesterday"})
    assert graph_csdl.check("attachment", {"@odata.type": "#microsoft.graph.mailFolder", "id": "x"})
    assert graph_csdl.check("subscription", {"id": "x", "resource": None})  # Nullable="false"
    file = {"@odata.type": "#microsoft.graph.fileAttachment", "id": "a", "contentBytes": "AAE=", "size": 2}
    assert graph_csdl.check("attachment", file) == []
    assert graph_csdl.check("attachment", {**file, "contentBytes": "not base64!"})
