"""The simulated Dataverse through requests: create with binds and deep insert, retrieve with $expand,
conditional create/update (upsert), re-link, untrack, attachments, delete."""

from __future__ import annotations

import base64
import uuid

import pytest


@pytest.fixture
def records(dataverse):
    crm = dataverse.crm
    return {
        "account": crm.add_account("Contoso Ltd", "C-1001", "info@contoso.com"),
        "contact": crm.add_contact("Jane Doe", "jane@contoso.com"),
        "lead": crm.add_lead("Lee Lead", "lee@example.org", company="Prospects Inc"),
        "opportunity": crm.add_opportunity("Big deal"),
        "incident": crm.add_incident("Broken widget", "CAS-1"),
    }


def _email(records, activity_id=None, **extra):
    body = {
        "subject": "Quarterly figures",
        "description": "<p>Hello</p>",
        "messageid": "<m1@contoso.com>",
        "directioncode": False,
        "senton": "2026-11-29T10:00:00Z",
        "statecode": 1,
        "statuscode": 4,
        "regardingobjectid_account_email@odata.bind": f"/accounts({records['account']})",
        "email_activity_parties": [
            {"participationtypemask": 1, "partyid_contact@odata.bind": f"/contacts({records['contact']})"},
            {"participationtypemask": 2, "addressused": "alice@example.com"},
            {"participationtypemask": 3, "partyid_lead@odata.bind": f"/leads({records['lead']})"},
        ],
    }
    if activity_id:
        body["activityid"] = activity_id
    body.update(extra)
    return body


def test_create_with_bind_and_deep_insert(dataverse, records):
    response = dataverse.session.post(dataverse.url("emails"), json=_email(records))
    assert response.status_code == 204
    assert response.content == b""
    entity_id = response.headers["OData-EntityId"]
    assert entity_id.startswith(f"{dataverse.api}/emails(")
    activity_id = entity_id[entity_id.index("(") + 1 : -1]
    [email] = dataverse.crm.emails()
    assert email["activityid"] == activity_id
    assert email["regarding"] == ("account", records["account"])
    assert email["regarding_name"] == "Contoso Ltd"
    assert (email["statecode"], email["statuscode"], email["directioncode"]) == (1, 4, False)
    assert email["parties"] == [
        (1, ("contact", records["contact"])),
        (2, "alice@example.com"),
        (3, ("lead", records["lead"])),
    ]
    # a resolved party gets the record's address as addressused, like Dataverse
    parties = dataverse.session.get(
        dataverse.url(
            f"emails({activity_id})?$select=subject&$expand=email_activity_parties($select=addressused,participationtypemask,_partyid_value)"
        )
    ).json()["email_activity_parties"]
    assert {p["participationtypemask"]: p["addressused"] for p in parties}[1] == "jane@contoso.com"
    assert {p["participationtypemask"]: p["_partyid_value"] for p in parties}[3] == records["lead"]


def test_return_representation_and_retrieve(dataverse, records):
    activity_id = str(uuid.uuid4())
    response = dataverse.session.post(
        dataverse.url("emails?$select=subject,messageid,statuscode,_regardingobjectid_value"),
        json=_email(records, activity_id),
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=representation"
    body = response.json()
    assert body["activityid"] == activity_id
    assert body["_regardingobjectid_value"] == records["account"]
    assert body["@odata.etag"].startswith('W/"')
    got = dataverse.session.get(
        dataverse.url(f"emails({activity_id})"),
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    assert got.status_code == 200
    row = got.json()
    assert row["subject"] == "Quarterly figures" and row["senton"] == "2026-11-29T10:00:00Z"
    assert row["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert row["_regardingobjectid_value@OData.Community.Display.V1.FormattedValue"] == "Contoso Ltd"
    assert got.headers["ETag"] == row["@odata.etag"]


def test_create_with_existing_activityid_is_412(dataverse, records):
    activity_id = str(uuid.uuid4())
    assert (
        dataverse.session.post(dataverse.url("emails"), json=_email(records, activity_id)).status_code == 204
    )
    again = dataverse.session.post(dataverse.url("emails"), json=_email(records, activity_id))
    assert again.status_code == 412
    assert again.json()["error"]["code"] == "0x80040237"
    assert len(dataverse.crm.emails()) == 1


def test_upsert_with_if_none_match_creates_once(dataverse, records):
    activity_id = str(uuid.uuid4())
    body = _email(records)
    url = dataverse.url(f"emails({activity_id})")
    first = dataverse.session.patch(url, json=body, headers={"If-None-Match": "*"})
    assert first.status_code == 204
    assert first.headers["OData-EntityId"] == url
    second = dataverse.session.patch(url, json=body, headers={"If-None-Match": "*"})
    assert second.status_code == 412
    assert second.json()["error"] == {
        "code": "0x80040237",
        "message": "A record with matching key values already exists.",
    }
    assert [e["activityid"] for e in dataverse.crm.emails()] == [activity_id]


def test_update_with_if_match_needs_the_row(dataverse, records):
    missing = str(uuid.uuid4())
    response = dataverse.session.patch(
        dataverse.url(f"emails({missing})"), json={"subject": "x"}, headers={"If-Match": "*"}
    )
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "0x80040217",
        "message": f"email With Id = {missing} Does Not Exist",
    }
    assert dataverse.crm.emails() == []


def test_relink_untrack_and_parties_on_a_completed_email(dataverse, records):
    activity_id = str(uuid.uuid4())
    dataverse.session.post(dataverse.url("emails"), json=_email(records, activity_id)).raise_for_status()
    url = dataverse.url(f"emails({activity_id})")
    relink = dataverse.session.patch(
        url,
        json={"regardingobjectid_opportunity_email@odata.bind": f"/opportunities({records['opportunity']})"},
        headers={"If-Match": "*"},
    )
    assert relink.status_code == 204
    email = dataverse.crm.email(activity_id)
    assert email["regarding"] == ("opportunity", records["opportunity"])
    assert email["statecode"] == 1  # a Completed email accepts updates
    untrack = dataverse.session.patch(
        url, json={"regardingobjectid_opportunity_email@odata.bind": None}, headers={"If-Match": "*"}
    )
    assert untrack.status_code == 204
    assert dataverse.crm.email(activity_id)["regarding"] is None
    dataverse.session.patch(
        url, json={"regardingobjectid_incident_email@odata.bind": f"/incidents({records['incident']})"}
    ).raise_for_status()
    ref = dataverse.session.delete(f"{url}/regardingobjectid_incident_email/$ref")
    assert ref.status_code == 204
    assert dataverse.crm.email(activity_id)["regarding"] is None
    parties = dataverse.session.patch(
        url, json={"email_activity_parties": [{"participationtypemask": 1, "addressused": "new@x.org"}]}
    )
    assert parties.status_code == 204
    assert dataverse.crm.email(activity_id)["parties"] == [(1, "new@x.org")]
    assert len(dataverse.crm.records("activityparty")) == 1


def test_etag_if_match(dataverse, records):
    activity_id = str(uuid.uuid4())
    dataverse.session.post(dataverse.url("emails"), json=_email(records, activity_id)).raise_for_status()
    url = dataverse.url(f"emails({activity_id})")
    etag = dataverse.session.get(url + "?$select=subject").json()["@odata.etag"]
    assert dataverse.session.patch(url, json={"subject": "v2"}, headers={"If-Match": etag}).status_code == 204
    stale = dataverse.session.patch(url, json={"subject": "v3"}, headers={"If-Match": etag})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "0x80060882"
    assert dataverse.crm.email(activity_id)["subject"] == "v2"


def test_attachments_and_delete_cascade(dataverse, records):
    activity_id = str(uuid.uuid4())
    dataverse.session.post(dataverse.url("emails"), json=_email(records, activity_id)).raise_for_status()
    content = b"%PDF-1.4 quarterly"
    response = dataverse.session.post(
        dataverse.url("activitymimeattachments"),
        json={
            "subject": "figures.pdf",
            "filename": "figures.pdf",
            "mimetype": "application/pdf",
            "body": base64.b64encode(content).decode(),
            "objecttypecode": "email",
            "objectid_email@odata.bind": f"/emails({activity_id})",
        },
    )
    assert response.status_code == 204
    attachment_id = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    email = dataverse.crm.email(activity_id)
    assert email["attachments"] == [("figures.pdf", "application/pdf", len(content))]
    assert email["row"]["attachmentcount"] == 1
    assert dataverse.crm.attachment_content(attachment_id) == content
    expanded = dataverse.session.get(
        dataverse.url(
            f"emails({activity_id})?$select=subject&$expand=email_activity_mime_attachment($select=filename,filesize)"
        )
    ).json()
    assert [(a["filename"], a["filesize"]) for a in expanded["email_activity_mime_attachment"]] == [
        ("figures.pdf", len(content))
    ]
    assert dataverse.session.delete(dataverse.url(f"emails({activity_id})")).status_code == 204
    assert dataverse.crm.emails() == []
    assert dataverse.crm.records("activityparty") == []
    assert dataverse.crm.records("activitymimeattachment") == []
    gone = dataverse.session.delete(dataverse.url(f"emails({activity_id})"))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "0x80040217"
    assert dataverse.session.get(dataverse.url(f"emails({activity_id})")).status_code == 404


def test_whoami_and_service_document(dataverse):
    who = dataverse.session.get(dataverse.url("WhoAmI"))
    assert who.status_code == 200 and who.headers["OData-Version"] == "4.0"
    assert uuid.UUID(who.json()["UserId"])
    sets = {s["name"] for s in dataverse.session.get(dataverse.api + "/").json()["value"]}
    assert {"emails", "activityparties", "activitymimeattachments", "accounts", "contacts", "leads"} <= sets


def test_custom_table_as_regarding(dataverse):
    dataverse.crm.add_table("new_project", "new_projects", name_column="new_name")
    project = dataverse.crm.add_record("new_project", new_name="Apollo")
    body = {"subject": "x", "regardingobjectid_new_project_email@odata.bind": f"/new_projects({project})"}
    assert dataverse.session.post(dataverse.url("emails"), json=body).status_code == 204
    [email] = dataverse.crm.emails()
    assert (email["regarding"], email["regarding_name"]) == (("new_project", project), "Apollo")
    rows = dataverse.session.get(dataverse.url("new_projects?$select=new_name")).json()["value"]
    assert [(r["new_projectid"], r["new_name"]) for r in rows] == [(project, "Apollo")]


def test_conditional_retrieval_304(dataverse):
    account = dataverse.crm.add_account("Contoso")
    url = dataverse.url(f"accounts({account})?$select=name")
    etag = dataverse.session.get(url).headers["ETag"]
    unchanged = dataverse.session.get(url, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    dataverse.crm.update_record("account", account, name="Contoso Ltd")
    changed = dataverse.session.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["name"] == "Contoso Ltd"
