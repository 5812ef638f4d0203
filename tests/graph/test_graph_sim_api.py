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
        (graph.user("mailFolders/inbox/messages"), {"$filter": "isRead eq false"}, 400, "BadRequest"),
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
