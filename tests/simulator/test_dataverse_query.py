"""Queries as records sync and the sink make them: $select/$filter/$orderby/$top, paging with nextLink,
change tracking with delta links (changed and deleted rows)."""

from __future__ import annotations

import pytest


@pytest.fixture
def accounts(dataverse):
    crm = dataverse.crm
    return {
        name: crm.add_account(name, number, email)
        for name, number, email in [
            ("Contoso", "C-1", "info@contoso.com"),
            ("Fabrikam", "F-2", "sales@fabrikam.com"),
            ("Northwind", "N-3", None),
            ("Contoso Pharma", "C-4", "pharma@contoso.com"),
            ("Tailspin O'Toys", "T-5", "toys@tailspin.com"),
        ]
    }


def _names(dataverse, query: str) -> list[str]:
    response = dataverse.session.get(dataverse.url(f"accounts?$select=name&{query}"))
    assert response.status_code == 200, response.text
    return sorted(row["name"] for row in response.json()["value"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("$filter=name eq 'contoso'", ["Contoso"]),
        ("$filter=name ne 'Contoso'", ["Contoso Pharma", "Fabrikam", "Northwind", "Tailspin O'Toys"]),
        ("$filter=startswith(name,'Contoso')", ["Contoso", "Contoso Pharma"]),
        ("$filter=contains(emailaddress1,'@contoso.com') and accountnumber eq 'C-4'", ["Contoso Pharma"]),
        ("$filter=accountnumber eq 'F-2' or accountnumber eq 'N-3'", ["Fabrikam", "Northwind"]),
        ("$filter=emailaddress1 eq null", ["Northwind"]),
        ("$filter=not (emailaddress1 eq null) and endswith(name,'Toys')", ["Tailspin O'Toys"]),
        ("$filter=name eq 'Tailspin O''Toys'", ["Tailspin O'Toys"]),
        (
            "$filter=statecode eq 0 and (startswith(name,'N') or startswith(name,'F'))",
            ["Fabrikam", "Northwind"],
        ),
    ],
)
def test_filter(dataverse, accounts, query, expected):
    assert _names(dataverse, query) == expected


def test_filter_on_ids_lookups_and_dates(dataverse, accounts):
    account = accounts["Fabrikam"]
    assert _names(dataverse, f"$filter=accountid eq {account}") == ["Fabrikam"]
    contact = dataverse.crm.add_contact("Jane Doe", "jane@fabrikam.com", account=account)
    rows = dataverse.session.get(
        dataverse.url(
            f"contacts?$select=fullname,_parentcustomerid_value&$filter=_parentcustomerid_value eq {account}"
        )
    ).json()["value"]
    assert [(r["contactid"], r["_parentcustomerid_value"]) for r in rows] == [(contact, account)]
    assert (
        len(
            dataverse.session.get(
                dataverse.url("accounts?$filter=modifiedon ge 2020-01-01T00:00:00Z")
            ).json()["value"]
        )
        == 5
    )
    assert (
        dataverse.session.get(dataverse.url("accounts?$filter=modifiedon lt 2020-01-01")).json()["value"]
        == []
    )


def test_select_orderby_top(dataverse, accounts):
    response = dataverse.session.get(
        dataverse.url("accounts?$select=name,accountnumber&$orderby=accountnumber desc&$top=2")
    )
    body = response.json()
    assert body["@odata.context"] == f"{dataverse.api}/$metadata#accounts(name,accountnumber)"
    assert [r["accountnumber"] for r in body["value"]] == ["T-5", "N-3"]
    assert set(body["value"][0]) == {"@odata.etag", "name", "accountnumber", "accountid"}
    full = dataverse.session.get(dataverse.url(f"accounts({accounts['Contoso']})")).json()
    assert full["emailaddress1"] == "info@contoso.com" and "telephone1" in full and full["telephone1"] is None


def test_paging_with_maxpagesize(dataverse):
    created = {dataverse.crm.add_account(f"Account {i:02d}", f"A-{i}") for i in range(12)}
    url = dataverse.url("accounts?$select=name,accountnumber")
    seen, pages = [], 0
    while url:
        response = dataverse.session.get(url, headers={"Prefer": "odata.maxpagesize=5"})
        assert response.status_code == 200
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=5"
        body = response.json()
        assert len(body["value"]) <= 5
        seen.extend(row["accountid"] for row in body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
        assert "@odata.deltaLink" not in body
        if url:
            assert "$skiptoken=" in url and "$select=name,accountnumber" in url
    assert pages == 3
    assert sorted(seen) == sorted(created)


def test_change_tracking_reports_changes_and_deletions(dataverse, accounts):
    first = dataverse.session.get(
        dataverse.url("accounts?$select=name,accountnumber,emailaddress1"),
        headers={"Prefer": "odata.track-changes"},
    )
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    body = first.json()
    assert len(body["value"]) == 5 and "@odata.nextLink" not in body
    delta = body["@odata.deltaLink"]
    assert "$deltatoken=" in delta and "$select=name,accountnumber,emailaddress1" in delta

    nothing = dataverse.session.get(delta).json()
    assert nothing["value"] == [] and nothing["@odata.deltaLink"]

    crm = dataverse.crm
    crm.update_record("account", accounts["Fabrikam"], name="Fabrikam Inc")
    new = crm.add_account("Adventure Works", "A-6")
    crm.delete_record("account", accounts["Northwind"])
    changes = dataverse.session.get(delta)
    assert changes.status_code == 200
    body = changes.json()
    assert body["@odata.context"].endswith("#accounts(name,accountnumber,emailaddress1)/$delta")
    changed = [row for row in body["value"] if "name" in row]
    assert [(r["accountid"], r["name"]) for r in changed] == [
        (accounts["Fabrikam"], "Fabrikam Inc"),
        (new, "Adventure Works"),
    ]
    [deleted] = [row for row in body["value"] if "reason" in row]
    assert deleted == {
        "@odata.context": f"{dataverse.api}/$metadata#accounts/$deletedEntity",
        "id": accounts["Northwind"],
        "reason": "deleted",
    }
    assert body["value"][-1] == deleted  # new or updated first, then deleted
    follow_up = dataverse.session.get(body["@odata.deltaLink"]).json()
    assert follow_up["value"] == []


def test_change_tracking_pages_then_gives_the_delta_link(dataverse):
    for i in range(7):
        dataverse.crm.add_contact(f"Person {i}", f"p{i}@example.org")
    url, rows, body = dataverse.url("contacts?$select=fullname,emailaddress1"), [], {}
    headers = {"Prefer": "odata.track-changes,odata.maxpagesize=3"}
    while url:
        body = dataverse.session.get(url, headers=headers).json()
        rows.extend(body["value"])
        url = body.get("@odata.nextLink")
    assert len(rows) == 7
    dataverse.crm.add_contact("Late Comer", "late@example.org")
    delta = dataverse.session.get(body["@odata.deltaLink"], headers=headers).json()
    assert [r["fullname"] for r in delta["value"]] == ["Late Comer"]


@pytest.mark.parametrize(
    "option", ["$filter=name eq 'x'", "$top=1", "$orderby=name", "$expand=email_activity_parties"]
)
def test_change_tracking_refuses_unsupported_options(dataverse, option):
    set_name = "emails" if "expand" in option else "accounts"
    response = dataverse.session.get(
        dataverse.url(f"{set_name}?{option}"), headers={"Prefer": "odata.track-changes"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "0x80060888"
    assert "query parameter isn't supported when Change Tracking is enabled" in error["message"]


def test_bad_delta_token(dataverse):
    response = dataverse.session.get(dataverse.url("accounts?$deltatoken=garbage"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "0x80060888"


def test_emails_by_messageid_with_parties(dataverse):
    dataverse.session.post(
        dataverse.url("emails"),
        json={
            "subject": "s",
            "messageid": "<k1@x>",
            "email_activity_parties": [{"participationtypemask": 1, "addressused": "a@x"}],
        },
    ).raise_for_status()
    dataverse.session.post(
        dataverse.url("emails"), json={"subject": "t", "messageid": "<k2@x>"}
    ).raise_for_status()
    rows = dataverse.session.get(
        dataverse.url(
            "emails?$select=subject,messageid&$filter=messageid eq '<k1@x>'&$expand=email_activity_parties($select=addressused)"
        )
    ).json()["value"]
    assert [(r["subject"], [p["addressused"] for p in r["email_activity_parties"]]) for r in rows] == [
        ("s", ["a@x"])
    ]
