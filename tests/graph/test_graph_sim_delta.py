"""Delta over the shared mailboxes: pages and links, immutable ids across moves made through EWS and
through Graph, 410 for expired tokens, and the folder hierarchy delta."""

from __future__ import annotations

from foldertrack.simulator.mime import MailSpec
from foldertrack.testing.fixtures_simulator import exchangelib_account

MAXPAGE = 'odata.maxpagesize=2, IdType="ImmutableId"'


def _walk(session, url, prefer=MAXPAGE):
    """Every entry of a delta chain from ``url``, the number of pages and the delta link."""
    entries, pages = [], 0
    while True:
        answer = session.get(url, headers={"Prefer": prefer})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages += 1
        entries += body["value"]
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return entries, pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_initial_delta_pages_then_only_changes(graph):
    box = graph.sim.mailbox(graph.mailbox)
    for n in range(5):
        box.deliver(MailSpec(subject=f"m{n}", to=[graph.mailbox]))
    session = graph.session()
    entries, pages, link = _walk(session, graph.user("mailFolders/inbox/messages/delta?$select=subject"))
    assert sorted(e["subject"] for e in entries) == [f"m{n}" for n in range(5)]
    assert pages == 3 and all(set(e) == {"@odata.type", "@odata.etag", "id", "subject"} for e in entries)
    again, _, link = _walk(session, link)
    assert again == []
    box.deliver(MailSpec(subject="new", to=[graph.mailbox]))
    box.mark_read(box.item_ids("Inbox")[0])
    changed, _, _ = _walk(session, link)
    assert sorted(e["subject"] for e in changed) == ["m0", "new"]  # the read flag change is an update


def test_move_through_ews_shows_in_graph_delta_with_the_same_immutable_id(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.create_folder("Inbox/Customers")
    box.deliver(MailSpec(subject="to file", to=[graph.mailbox]))
    session = graph.session()
    inbox, _, inbox_link = _walk(session, graph.user("mailFolders/inbox/messages/delta?$select=subject"))
    customers_id = (
        graph.sim.mailbox(graph.mailbox).folder_id("Inbox/Customers").replace("/", "-").replace("+", "_")
    )
    customers_url = graph.user(f"mailFolders/{customers_id}/messages/delta?$select=subject,parentFolderId")
    _, _, customers_link = _walk(session, customers_url)
    account = exchangelib_account(graph.sim, graph.mailbox)
    [item] = list(account.inbox.all())
    item.move(account.inbox / "Customers")  # a new EWS item id
    removed, _, _ = _walk(session, inbox_link)
    assert removed == [
        {"@odata.type": "#microsoft.graph.message", "id": inbox[0]["id"], "@removed": {"reason": "deleted"}}
    ]
    [arrived], _, _ = _walk(session, customers_link)
    assert arrived["id"] == inbox[0]["id"] and arrived["parentFolderId"] == customers_id
    fetched = session.get(graph.user(f"messages/{inbox[0]['id']}"), params={"$select": "subject"}).json()
    assert fetched["subject"] == "to file"


def test_without_immutable_ids_a_move_changes_the_id(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.create_folder("Archive")
    box.deliver(MailSpec(subject="x", to=[graph.mailbox]))
    session = graph.session(immutable=False)
    [before] = session.get(graph.user("mailFolders/inbox/messages")).json()["value"]
    new_ews_id = box.move_item(box.item_ids("Inbox")[0], "Archive")
    assert session.get(graph.user(f"messages/{before['id']}")).status_code == 404
    archive = box.folder_id("Archive").replace("/", "-").replace("+", "_")
    [after] = session.get(graph.user(f"mailFolders/{archive}/messages")).json()["value"]
    assert after["id"] != before["id"] and after["id"] == new_ews_id.replace("/", "-").replace("+", "_")
    assert after["internetMessageId"] == before["internetMessageId"]


def test_move_through_graph_shows_in_ews_sync(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.create_folder("Inbox/Customers")
    box.deliver(MailSpec(subject="graph move", to=[graph.mailbox]))
    account = exchangelib_account(graph.sim, graph.mailbox)
    customers = account.inbox / "Customers"
    assert list(account.inbox.sync_items(only_fields=["subject"]))  # first sync: the item
    assert not list(customers.sync_items(only_fields=["subject"]))
    session = graph.session()
    [message] = session.get(graph.user("mailFolders/inbox/messages")).json()["value"]
    target = session.get(graph.user("mailFolders/inbox/childFolders")).json()["value"][0]["id"]
    moved = session.post(graph.user(f"messages/{message['id']}/move"), json={"destinationId": target})
    assert moved.status_code == 201 and moved.json()["id"] == message["id"]  # immutable
    assert [kind for kind, _ in account.inbox.sync_items(only_fields=["subject"])] == ["delete"]
    created = list(customers.sync_items(only_fields=["subject"]))
    assert [(kind, item.subject) for kind, item in created] == [("create", "graph move")]


def test_expired_delta_token_is_410_sync_state_not_found(graph):
    box = graph.sim.mailbox(graph.mailbox)
    for n in range(3):
        box.deliver(MailSpec(subject=f"m{n}", to=[graph.mailbox]))
    session = graph.session()
    first = session.get(graph.user("mailFolders/inbox/messages/delta"), headers={"Prefer": MAXPAGE}).json()
    graph.sim.graph.faults.expire_delta_tokens()
    gone = session.get(first["@odata.nextLink"], headers={"Prefer": MAXPAGE})
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"
    garbage = session.get(graph.user("mailFolders/inbox/messages/delta?$deltatoken=bm90LWEtdG9rZW4"))
    assert garbage.status_code == 410
    entries, _, _ = _walk(session, graph.user("mailFolders/inbox/messages/delta"))  # a new chain works
    assert len(entries) == 3


def test_folder_delta_follows_create_rename_move_delete(graph):
    box = graph.sim.mailbox(graph.mailbox)
    session = graph.session()
    initial, _, link = _walk(session, graph.user("mailFolders/delta"))
    assert {"Inbox", "Sent Items", "Deleted Items"} <= {f["displayName"] for f in initial}
    assert "Top of Information Store" not in {f["displayName"] for f in initial}
    new = box.create_folder("Inbox/Customers")
    created, _, link = _walk(session, link)
    rest = new.replace("/", "-").replace("+", "_")
    assert any(f["id"] == rest and f["displayName"] == "Customers" for f in created)
    box.rename_folder("Inbox/Customers", "Clients")
    renamed, _, link = _walk(session, link)
    assert [f["displayName"] for f in renamed if f["id"] == rest] == ["Clients"]
    box.delete_folder("Inbox/Clients", hard=True)
    removed, _, _ = _walk(session, link)
    assert {"id": rest, "@removed": {"reason": "deleted"}} in removed
