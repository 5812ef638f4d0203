"""The Graph simulator's mail endpoints over real HTTPS with real MSAL tokens: folders, messages,
``$select``/``$top``/``$expand``, PATCH, errors and authentication as Graph answers them."""

from __future__ import annotations

import requests

from foldertrack.simulator.mime import MailSpec

HELLO = MailSpec(
    subject="Quote",
    sender="Bob Buyer <bob@fabrikam.example>",
    to=["alice@contoso.example"],
    cc=["carol@fabrikam.example"],
    body="Please find the quote.",
    attachments=[("quote.pdf", "application/pdf", b"%PDF-1.4 quote")],
)


def test_folders_well_known_names_and_children(graph):
    box = graph.sim.mailbox(graph.mailbox)
    contoso = box.create_folder("Inbox/Customers/Contoso")
    session = graph.session()
    top = session.get(graph.user("mailFolders")).json()["value"]
    names = {f["displayName"] for f in top}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Junk Email", "Outbox"} <= names
    assert "Calendar" not in names  # not a mail folder
    inbox = session.get(graph.user("mailFolders/inbox")).json()
    assert inbox["displayName"] == "Inbox" and inbox["childFolderCount"] == 1
    customers = session.get(graph.user(f"mailFolders/{inbox['id']}/childFolders")).json()["value"]
    assert [f["displayName"] for f in customers] == ["Customers"]
    contoso_json = session.get(graph.user(f"mailFolders/{customers[0]['id']}/childFolders")).json()["value"][
        0
    ]
    assert contoso_json["parentFolderId"] == customers[0]["id"]
    assert contoso_json["id"].replace("-", "/").replace("_", "+") == contoso  # REST form of the EWS id


def test_folder_list_pages_with_top_and_next_link(graph):
    box = graph.sim.mailbox(graph.mailbox)
    for n in range(5):
        box.create_folder(f"Inbox/F{n}")
    session = graph.session()
    page = session.get(graph.user("mailFolders/inbox/childFolders"), params={"$top": "2"}).json()
    seen = [f["displayName"] for f in page["value"]]
    while "@odata.nextLink" in page:
        page = session.get(page["@odata.nextLink"]).json()
        seen += [f["displayName"] for f in page["value"]]
    assert sorted(seen) == [f"F{n}" for n in range(5)]


def test_messages_select_expand_and_get(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(HELLO)
    session = graph.session()
    listing = session.get(
        graph.user("mailFolders/inbox/messages"),
        params={
            "$select": "subject,from,internetMessageId",
            "$expand": "attachments($select=name,size,contentType)",
        },
    ).json()
    [message] = listing["value"]
    assert set(message) == {"@odata.etag", "id", "subject", "from", "internetMessageId", "attachments"}
    assert message["from"] == {"emailAddress": {"name": "Bob Buyer", "address": "bob@fabrikam.example"}}
    [attachment] = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["name"] == "quote.pdf" and attachment["size"] == len(b"%PDF-1.4 quote")
    assert "contentBytes" not in attachment
    full = session.get(graph.user(f"messages/{message['id']}")).json()
    assert full["body"]["contentType"] == "text" and "quote" in full["body"]["content"]
    assert full["ccRecipients"][0]["emailAddress"]["address"] == "carol@fabrikam.example"
    assert full["hasAttachments"] is True and "internetMessageHeaders" not in full
    content = session.get(graph.user(f"messages/{message['id']}/attachments/{attachment['id']}")).json()
    assert content["contentBytes"] == "JVBERi0xLjQgcXVvdGU="


def test_patch_categories_is_seen_through_ews(graph):
    box = graph.sim.mailbox(graph.mailbox)
    ews_id = box.deliver(HELLO)
    session = graph.session()
    [message] = session.get(graph.user("mailFolders/inbox/messages")).json()["value"]
    answer = session.patch(graph.user(f"messages/{message['id']}"), json={"categories": ["Tracked to CRM"]})
    assert answer.status_code == 200 and answer.json()["categories"] == ["Tracked to CRM"]
    assert box.items("Inbox")[0].categories == ("Tracked to CRM",)
    assert box.items("Inbox")[0].id == ews_id
    refused = session.patch(graph.user(f"messages/{message['id']}"), json={"subject": "changed"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorInvalidProperty"


def test_errors_are_odata_error_bodies(graph):
    session = graph.session()
    cases = [
        (
            graph.user(
                "mailFolders/inbox/messages",
            ),
            {"$select": "subjekt"},
            400,
            "RequestBroker--ParseUri",
        ),
        (graph.user("messages/not-an-id"), None, 400, "ErrorInvalidIdMalformed"),
        (
            graph.user("mailFolders/AAACLgBGVEYAAAABAAAAAAAAA_8AAAAAm6-vbw=="),
            None,
            400,
            "ErrorInvalidIdMalformed",
        ),
        (graph.user("mailFolders", mailbox="nobody@contoso.example"), None, 404, "ErrorInvalidUser"),
        (graph.user("mailFolders/inbox/messages"), {"$filter": "isRead eq"}, 400, "BadRequest"),
    ]
    for url, params, status, code in cases:
        answer = session.get(url, params=params)
        assert answer.status_code == status, (url, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and error["message"], url
        assert "request-id" in error["innerError"]


def test_deleted_folder_is_404(graph):
    box = graph.sim.mailbox(graph.mailbox)
    folder = box.create_folder("Inbox/Old")
    box.delete_folder("Inbox/Old", hard=True)
    answer = graph.session().get(graph.user(f"mailFolders/{folder.replace('/', '-').replace('+', '_')}"))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "ErrorItemNotFound"


def test_tokens_missing_expired_wrong_audience_or_plain_http_get_401(graph):
    url = graph.user("mailFolders")
    missing = requests.get(url, verify=graph.ca_path)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    dataverse_token = graph.token(scope=f"{graph.sim.https_base}/.default")  # a token for another resource
    wrong = graph.session(token=dataverse_token).get(url)
    assert wrong.status_code == 401 and "audience" in wrong.json()["error"]["message"]
    session = graph.session()
    assert session.get(url).status_code == 200
    graph.sim.identity.expire_tokens()
    expired = session.get(url)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    plain = requests.get(
        f"http://127.0.0.1:{graph.sim.port}/v1.0/users/{graph.mailbox}/mailFolders",
        headers={"Authorization": f"Bearer {graph.token()}"},
    )
    assert plain.status_code == 401


def _mails_received_days_ago(graph, *days_and_subjects: tuple[int, str]) -> dict[str, str]:
    """Deliver one mail per ``(days ago, subject)`` into the Inbox; their ``internetMessageId`` by subject."""
    import datetime as dt

    box, store = graph.sim.mailbox(graph.mailbox), graph.sim.store
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ids = {}
    for days, subject in days_and_subjects:
        message_id = f"<{subject.replace(' ', '-')}@fabrikam.example>"
        ews_id = box.deliver(MailSpec(subject=subject, sender="bob@fabrikam.example", message_id=message_id))
        with store.lock:
            store.item_by_id(store.mailbox(graph.mailbox), ews_id).received = now - dt.timedelta(days=days)
        ids[subject] = message_id
    return ids


def test_message_list_filter_orderby_and_count(graph):
    """``$filter`` on received time, Message-ID and subject (case-insensitive), ``$orderby`` and
    ``@odata.count`` (the whole match, not the page), as the inspection commands use them on Graph."""
    import datetime as dt

    ids = _mails_received_days_ago(graph, (40, "Old quote"), (5, "New QUOTE"), (1, "Invoice"))
    session, url = graph.session(), graph.user("mailFolders/inbox/messages")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = session.get(
        url,
        params={
            "$count": "true",
            "$top": "1",
            "$filter": f"receivedDateTime ge {since}",
            "$orderby": "receivedDateTime desc",
            "$select": "subject",
        },
    ).json()
    assert page["@odata.count"] == 2 and [m["subject"] for m in page["value"]] == ["Invoice"]
    assert "@odata.nextLink" in page and "@odata.count" in session.get(page["@odata.nextLink"]).json()
    oldest_first = session.get(url, params={"$orderby": "receivedDateTime asc", "$select": "subject"}).json()
    assert [m["subject"] for m in oldest_first["value"]] == ["Old quote", "New QUOTE", "Invoice"]
    assert "@odata.count" not in oldest_first

    def subjects(filter_text: str) -> list[str]:
        answer = session.get(url, params={"$filter": filter_text, "$select": "subject"})
        assert answer.status_code == 200, answer.text
        return [m["subject"] for m in answer.json()["value"]]

    assert subjects(f"internetMessageId eq '{ids['Old quote']}'") == ["Old quote"]
    assert subjects("contains(subject,'quote')") == ["New QUOTE", "Old quote"]  # newest first by default
    assert subjects(f"receivedDateTime lt {since} and startswith(subject,'OLD')") == ["Old quote"]
    assert subjects("subject eq 'it''s not there'") == []


def test_message_filter_refusals_are_odata_errors(graph):
    """What Graph refuses: ``$orderby`` on a property not filtered first (``InefficientFilter``), a type
    mismatch, an unknown property, a broken clause, ``$filter`` where Graph has none."""
    session, url = graph.session(), graph.user("mailFolders/inbox/messages")
    cases = [
        (
            {"$filter": "contains(subject,'quote')", "$orderby": "receivedDateTime desc"},
            "InefficientFilter",
        ),
        (
            {
                "$filter": "subject eq 'x' and receivedDateTime ge 2024-01-01T00:00:00Z",
                "$orderby": "receivedDateTime desc",
            },
            "InefficientFilter",
        ),
        ({"$filter": "receivedDateTime ge '2024-01-01'"}, "BadRequest"),
        ({"$filter": "subjekt eq 'x'"}, "RequestBroker--ParseUri"),
        ({"$filter": "subject eq"}, "BadRequest"),
        ({"$orderby": "subjekt"}, "RequestBroker--ParseUri"),
        ({"$count": "maybe"}, "BadRequest"),
    ]
    for params, code in cases:
        answer = session.get(url, params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["error"]["code"] == code, (params, answer.text)
    folders = session.get(graph.user("mailFolders/inbox/childFolders"), params={"$filter": "x eq 1"})
    assert folders.status_code == 400 and "not supported" in folders.json()["error"]["message"]
    ordered = session.get(
        url,
        params={
            "$filter": "receivedDateTime ge 2024-01-01 and contains(subject,'q')",
            "$orderby": "receivedDateTime",
        },
    )
    assert ordered.status_code == 200, ordered.text


def test_item_class_through_single_value_extended_properties(graph):
    """``$expand=singleValueExtendedProperties($filter=id eq 'String 0x001A')``: PidTagMessageClass as
    Graph names it in answers (``String 0x1a``); a property the item does not have is left out; Graph
    expands extended properties only with a filter on their id."""
    box, store = graph.sim.mailbox(graph.mailbox), graph.sim.store
    contact = box.deliver(MailSpec(subject="a contact", sender="bob@fabrikam.example"))
    with store.lock:
        store.item_by_id(store.mailbox(graph.mailbox), contact).item_class = "IPM.Contact"
    box.deliver(HELLO)
    session, url = graph.session(), graph.user("mailFolders/inbox/messages")

    def expanded(expand: str) -> dict[str, object]:
        answer = session.get(url, params={"$select": "subject", "$expand": expand})
        assert answer.status_code == 200, answer.text
        return {m["subject"]: m.get("singleValueExtendedProperties") for m in answer.json()["value"]}

    by_subject = expanded("singleValueExtendedProperties($filter=id eq 'String 0x001A')")
    assert by_subject == {
        "a contact": [{"id": "String 0x1a", "value": "IPM.Contact"}],
        "Quote": [{"id": "String 0x1a", "value": "IPM.Note"}],
    }
    assert expanded("singleValueExtendedProperties($filter=id eq 'String 0x3FFA')") == {
        "a contact": None,
        "Quote": None,
    }
    for expand in ("singleValueExtendedProperties", "singleValueExtendedProperties($filter=value eq 'x')"):
        refused = session.get(url, params={"$expand": expand})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest", expand
