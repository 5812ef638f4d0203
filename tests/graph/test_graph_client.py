"""foldertrack's Graph client against the simulator over real HTTPS: folder resolution and tree, delta
chains with the whole link as cursor, messages as activities (the same as the EWS source makes), the
per-mailbox throttle, token refresh."""

from __future__ import annotations

import threading
import time

import pytest

from foldertrack.exchange.convert import to_activity as ews_to_activity
from foldertrack.simulator.mime import MailSpec
from foldertrack.sources.graph import items
from foldertrack.sources.graph.auth import GraphAuthenticator
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.delta import folder_delta, message_delta
from foldertrack.sources.graph.errors import GraphAuthError, GraphNotFound, GraphThrottled
from foldertrack.sources.graph.folders import FolderTree, resolve_path
from foldertrack.sources.graph.throttle import MailboxThrottle
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.harness import wait_until


def _rest(ews_id: str) -> str:
    return ews_id.replace("/", "-").replace("+", "_")


def test_resolve_path_and_folder_tree_follow_changes(graph):
    box = graph.sim.mailbox(graph.mailbox)
    contoso = box.create_folder("Inbox/Customers/Contoso")
    client = graph.client()
    assert resolve_path(client, graph.mailbox, "inbox/CUSTOMERS/contoso") == _rest(contoso)
    with pytest.raises(GraphNotFound, match="Inbox/Nope"):
        resolve_path(client, graph.mailbox, "Inbox/Nope/Deeper")
    tree, cursor = FolderTree.load(client, graph.mailbox)
    assert tree.path(_rest(contoso)) == "Inbox/Customers/Contoso"
    assert tree.find("inbox/customers") is not None
    box.rename_folder("Inbox/Customers", "Clients")
    box.create_folder("Inbox/Clients/Fabrikam")
    changes = None
    for page in folder_delta(client, graph.mailbox).pages(cursor):
        changes = tree.apply(page)
        cursor = page.cursor
    assert changes is not None and _rest(contoso) in changes.changed  # its path changed with its parent
    assert tree.path(_rest(contoso)) == "Inbox/Clients/Contoso"
    assert [tree.path(f) for f in changes.added] == ["Inbox/Clients/Fabrikam"]
    box.delete_folder("Inbox/Clients/Contoso", hard=True)
    removed = [tree.apply(page) for page in folder_delta(client, graph.mailbox).pages(cursor)]
    assert _rest(contoso) in removed[-1].removed and tree.path(_rest(contoso)) is None


def test_delta_chain_cursor_per_page_resume_and_ews_moves(graph):
    box = graph.sim.mailbox(graph.mailbox)
    customers = _rest(box.create_folder("Inbox/Customers"))
    for n in range(5):
        box.deliver(MailSpec(subject=f"m{n}", to=[graph.mailbox]))
    client = graph.client()
    chain = message_delta(client, graph.mailbox, "inbox", page_size=2)
    pages = chain.pages()
    first = next(pages)
    assert len(first.changed) == 2 and not first.complete and "$skiptoken=" in first.cursor
    rest = list(chain.pages(first.cursor))  # resume from the saved cursor, as after a restart
    assert [len(p.changed) for p in rest] == [2, 1] and rest[-1].complete
    assert "$deltatoken=" in rest[-1].cursor
    subjects = {m["subject"] for p in [first, *rest] for m in p.changed}
    assert subjects == {f"m{n}" for n in range(5)}
    inbox_cursor = rest[-1].cursor
    _, customers_cursor = message_delta(client, graph.mailbox, customers).catch_up()
    account = exchangelib_account(graph.sim, graph.mailbox)
    moved = next(i for i in account.inbox.all() if i.subject == "m3")
    moved.move(account.inbox / "Customers")
    [left] = list(chain.pages(inbox_cursor))
    [arrived] = list(message_delta(client, graph.mailbox, customers).pages(customers_cursor))
    assert left.changed == () and len(left.removed) == 1
    assert [m["id"] for m in arrived.changed] == list(left.removed)  # one immutable id across the move
    assert arrived.changed[0]["parentFolderId"] == customers


def test_expired_cursor_restarts_the_chain(graph):
    box = graph.sim.mailbox(graph.mailbox)
    for n in range(3):
        box.deliver(MailSpec(subject=f"m{n}", to=[graph.mailbox]))
    client = graph.client()
    chain = message_delta(client, graph.mailbox, "inbox")
    _, cursor = chain.catch_up()
    graph.sim.graph.faults.expire_delta_tokens()
    pages = list(chain.pages(cursor))
    assert pages[0].restarted and sum(len(p.changed) for p in pages) == 3 and pages[-1].complete


def test_message_becomes_the_same_activity_as_through_ews(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(
        MailSpec(
            subject="Order",
            sender="Bob Buyer <bob@fabrikam.example>",
            to=["Alice <alice@contoso.example>", "dave@contoso.example"],
            cc=["carol@fabrikam.example"],
            body="Two attachments.",
            html_body="<p>Two <b>attachments</b>.</p>",
            attachments=[
                ("small.txt", "text/plain", b"small"),
                ("big.bin", "application/octet-stream", b"x" * 100),
            ],
        )
    )
    known = {"bob@fabrikam.example": None}
    client = graph.client()
    [message] = client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders/inbox/messages")["value"]
    activity = items.fetch_activity(
        client,
        graph.mailbox,
        message["id"],
        folder_id="inbox-id",
        folder_path="Inbox",
        regarding=None,
        max_attachment_bytes=50,
        resolve_address=known.get,
    )
    account = exchangelib_account(graph.sim, graph.mailbox)
    [ews_item] = list(account.inbox.all())
    ews = ews_to_activity(
        ews_item,
        mailbox=graph.mailbox,
        folder_id="inbox-id",
        folder_path="Inbox",
        regarding=None,
        max_attachment_bytes=50,
        resolve_address=known.get,
    )
    assert activity.key == ews.key and activity.key.startswith("mid:<")
    assert (activity.message_id, activity.subject, activity.sender, activity.direction) == (
        ews.message_id,
        ews.subject,
        ews.sender,
        ews.direction,
    )
    assert [(p.role, p.address, p.name) for p in activity.parties] == [
        (p.role, p.address, p.name) for p in ews.parties
    ]
    assert [(a.name, a.content_type, a.size, a.content) for a in activity.attachments] == [
        ("small.txt", "text/plain", 5, b"small"),
        ("big.bin", "application/octet-stream", 100, None),  # over the limit: named, not fetched
    ]
    assert activity.html_body == ews.html_body and "attachments" in (activity.text_body or "")
    assert activity.sent_at == ews.sent_at


def test_outgoing_mail_and_categories(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(
        MailSpec(subject="sent", sender=graph.mailbox, to=["x@fabrikam.example"]), folder="Sent Items"
    )
    client = graph.client()
    [message] = client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders/sentitems/messages")["value"]
    fetched = items.fetch_message(client, graph.mailbox, message["id"])
    activity = items.to_activity(
        fetched,
        mailbox=graph.mailbox,
        folder_id="f",
        folder_path="Sent Items",
        regarding=None,
        resolve_address=lambda a: None,
    )
    assert activity.direction == "outgoing"
    items.set_categories(client, graph.mailbox, message["id"], ["Tracked to CRM"])
    assert box.items("Sent Items")[0].categories == ("Tracked to CRM",)


def test_throttling_backs_off_that_mailbox_only(graph):
    graph.sim.add_mailbox("bob@contoso.example")
    client = graph.client()
    graph.sim.graph.faults.throttle(requests=1, retry_after=1, mailbox=graph.mailbox)
    with pytest.raises(GraphThrottled) as caught:
        client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")
    assert caught.value.retry_after == 1 and caught.value.status == 429
    started = time.monotonic()
    client.get("bob@contoso.example", "users/bob@contoso.example/mailFolders")
    assert time.monotonic() - started < 0.9  # the other mailbox did not wait
    assert client.throttle.retry_at(graph.mailbox) > time.monotonic()
    client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")  # waits out Retry-After, then succeeds
    assert time.monotonic() - started >= 0.9
    assert graph.sim.graph.faults.requests[graph.mailbox] == 2  # nothing was sent during the back-off
    impatient = graph.client(throttle=MailboxThrottle(max_wait=0.1))
    graph.sim.graph.faults.throttle(requests=1, retry_after=30, status=503)
    with pytest.raises(GraphThrottled):
        impatient.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")
    with pytest.raises(GraphThrottled, match="wait"):  # fails fast instead of parking the worker 30 s
        impatient.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")


def test_never_more_than_four_concurrent_requests_per_mailbox(graph):
    client = graph.client()
    gate = threading.Event()
    faults = graph.sim.graph.faults
    faults.hold = gate
    errors: list[Exception] = []

    def call() -> None:
        try:
            client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")
        except Exception as exc:  # collected: an ApplicationThrottled 429 would land here
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    wait_until(lambda: faults.peak(graph.mailbox) == 4, 10, "four requests inside the server")
    gate.set()
    for thread in threads:
        thread.join(20)
    assert errors == [] and faults.peak(graph.mailbox) == 4
    assert faults.requests[graph.mailbox] == 10


def test_expired_token_is_renewed_and_a_wrong_secret_is_an_auth_error(graph):
    client = graph.client()
    client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")
    graph.sim.identity.expire_tokens()
    client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")  # 401, new token, success
    auth = GraphAuthenticator(
        graph.tenant, graph.client_id, "not-the-secret", authority=graph.sim.https_base, verify=graph.ca_path
    )
    wrong = GraphClient(auth, base_url=graph.base, verify=graph.ca_path)
    try:
        with pytest.raises(GraphAuthError, match="AADSTS7000215") as caught:
            wrong.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders")
        assert "not-the-secret" not in str(caught.value)
    finally:
        wrong.close()


def test_mail_without_message_id_gets_the_ews_fallback_key(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(
        MailSpec(
            subject="no id",
            message_id="",
            body=None,
            html_body="<p>Hello <b>there</b></p><p>Bye</p>",
            to=[graph.mailbox],
        )
    )
    client = graph.client()
    [message] = client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders/inbox/messages")["value"]
    assert message["internetMessageId"] is None
    common = dict(
        folder_id="f",
        folder_path="Inbox",
        regarding=None,
        max_attachment_bytes=0,
        resolve_address=lambda a: None,
    )
    activity = items.fetch_activity(client, graph.mailbox, message["id"], **common)
    [ews_item] = list(exchangelib_account(graph.sim, graph.mailbox).inbox.all())
    ews = ews_to_activity(ews_item, mailbox=graph.mailbox, **common)
    assert activity.key == ews.key and activity.key.startswith("hash:")


def test_ews_ids_translate_to_graph_ids(graph):
    from foldertrack.sources.graph.ids import translate_ids

    box = graph.sim.mailbox(graph.mailbox)
    folder = box.create_folder("Inbox/Customers")
    item = box.deliver(MailSpec(subject="x", to=[graph.mailbox]), folder="Inbox/Customers")
    client = graph.client()
    translated = translate_ids(client, graph.mailbox, [folder, item, "garbage"])
    assert translated[folder] == resolve_path(client, graph.mailbox, "Inbox/Customers")
    [message] = client.get(graph.mailbox, f"users/{graph.mailbox}/mailFolders/{translated[folder]}/messages")[
        "value"
    ]
    assert translated[item] == message["id"] and translated["garbage"] is None
    back = translate_ids(
        client, graph.mailbox, [message["id"]], source="restImmutableEntryId", target="ewsId"
    )
    assert back == {message["id"]: item}


def test_messages_fetched_twenty_per_batch_with_per_message_errors(graph):
    from foldertrack.sources.graph.errors import GraphNotFound as NotFound

    box = graph.sim.mailbox(graph.mailbox)
    for n in range(23):
        box.deliver(
            MailSpec(subject=f"m{n}", to=[graph.mailbox], attachments=[("a.txt", "text/plain", b"a")])
        )
    client = graph.client()
    chain = message_delta(client, graph.mailbox, "inbox")
    pages, _ = chain.catch_up()
    ids = [m["id"] for p in pages for m in p.changed]
    box.delete_item(box.item_ids("Inbox")[0], hard=True)  # gone before the fetch
    sent_before = client.requests_sent
    fetched = items.fetch_messages(client, graph.mailbox, ids)
    assert client.requests_sent - sent_before == 2  # 23 messages, 2 HTTP requests
    errors = [v for v in fetched.values() if isinstance(v, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], NotFound)
    good = [v for v in fetched.values() if not isinstance(v, Exception)]
    assert len(good) == 22 and all(m["attachments"][0]["name"] == "a.txt" for m in good)
    graph.sim.graph.faults.throttle(requests=1, retry_after=1)
    throttled = items.fetch_messages(client, graph.mailbox, ids[1:3])
    assert isinstance(throttled[ids[1]], GraphThrottled) and isinstance(throttled[ids[2]], dict)
    assert client.throttle.retry_at(graph.mailbox) > time.monotonic()
