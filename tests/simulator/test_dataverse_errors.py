"""Dataverse's refusals, with its error codes: unknown properties, bad bindings, metadata limits, missing rows,
bad query options, tokens."""

from __future__ import annotations

import uuid

import pytest


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


def test_unknown_property(dataverse):
    error = _error(
        dataverse.session.post(dataverse.url("emails"), json={"subject": "x", "nosuchcolumn": 1}), 400
    )
    assert error["code"] == "0x80048d19"
    assert (
        "The property 'nosuchcolumn' does not exist on type 'Microsoft.Dynamics.CRM.email'"
        in error["message"]
    )
    assert dataverse.crm.emails() == []


def test_lookup_column_cannot_be_written_directly(dataverse):
    account = dataverse.crm.add_account("A")
    error = _error(
        dataverse.session.post(dataverse.url("emails"), json={"_regardingobjectid_value": account}), 400
    )
    assert error["code"] == "0x80048d19"


@pytest.mark.parametrize(
    ("key", "value", "status", "code", "fragment"),
    [
        (
            "regardingobjectid_nosuch_email@odata.bind",
            "/accounts({account})",
            400,
            "0x80048d19",
            "An undeclared property 'regardingobjectid_nosuch_email'",
        ),
        (
            "regardingobjectid_account_email@odata.bind",
            "/contacts({account})",
            400,
            "0x80048d19",
            "does not match",
        ),
        (
            "regardingobjectid_account_email@odata.bind",
            "accounts-{account}",
            400,
            "0x80048d19",
            "not a valid entity reference",
        ),
        (
            "regardingobjectid_account_email@odata.bind",
            "/accounts({missing})",
            404,
            "0x80040217",
            "account With Id = {missing} Does Not Exist",
        ),
    ],
)
def test_bad_bindings(dataverse, key, value, status, code, fragment):
    account, missing = dataverse.crm.add_account("A"), str(uuid.uuid4())
    body = {"subject": "x", key: value.format(account=account, missing=missing)}
    error = _error(dataverse.session.post(dataverse.url("emails"), json=body), status)
    assert error["code"] == code
    assert fragment.format(missing=missing) in error["message"]
    assert dataverse.crm.emails() == []


def test_absolute_bind_url_is_accepted(dataverse):
    account = dataverse.crm.add_account("A")
    body = {
        "subject": "x",
        "regardingobjectid_account_email@odata.bind": f"{dataverse.api}/accounts({account})",
    }
    assert dataverse.session.post(dataverse.url("emails"), json=body).status_code == 204


def test_bad_party_in_deep_insert_creates_nothing(dataverse):
    body = {
        "subject": "x",
        "email_activity_parties": [
            {"participationtypemask": 1, "addressused": "a@b.c"},
            {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({uuid.uuid4()})"},
        ],
    }
    assert _error(dataverse.session.post(dataverse.url("emails"), json=body), 404)["code"] == "0x80040217"
    assert dataverse.crm.emails() == [] and dataverse.crm.records("activityparty") == []


def test_string_too_long_uses_the_metadata_limit(dataverse):
    ok = dataverse.session.post(dataverse.url("emails"), json={"subject": "s" * 200})
    assert ok.status_code == 204
    error = _error(dataverse.session.post(dataverse.url("emails"), json={"subject": "s" * 201}), 400)
    assert error == {
        "code": "0x80044331",
        "message": "A validation error occurred. The length of the 'subject' attribute of the 'email' entity "
        "exceeded the maximum allowed length of '200'.",
    }
    long_id = "<" + "m" * 320 + ">"
    assert (
        _error(dataverse.session.post(dataverse.url("emails"), json={"messageid": long_id}), 400)["code"]
        == "0x80044331"
    )
    party = {"email_activity_parties": [{"participationtypemask": 2, "addressused": "a" * 201}]}
    assert (
        "'addressused' attribute of the 'activityparty'"
        in _error(dataverse.session.post(dataverse.url("emails"), json=party), 400)["message"]
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"statuscode": 99}, "0x8004431A"),
        ({"statecode": 7}, "0x8004431A"),
        ({"email_activity_parties": [{"participationtypemask": 12, "addressused": "a@b.c"}]}, "0x8004431A"),
        ({"statecode": 0, "statuscode": 4}, "0x80048408"),
        ({"subject": 5}, "0x80048d19"),
        ({"directioncode": "yes"}, "0x80048d19"),
        ({"senton": "yesterday"}, "0x80048d19"),
    ],
)
def test_invalid_values(dataverse, body, code):
    assert _error(dataverse.session.post(dataverse.url("emails"), json=body), 400)["code"] == code


def test_option_error_message(dataverse):
    error = _error(dataverse.session.post(dataverse.url("emails"), json={"statuscode": 99}), 400)
    assert error["message"] == (
        "A validation error occurred. The value 99 of 'statuscode' on record of type 'email' is outside the valid range."
    )


def test_status_derives_state(dataverse):
    response = dataverse.session.post(
        dataverse.url("emails?$select=statecode,statuscode"),
        json={"statuscode": 3},
        headers={"Prefer": "return=representation"},
    )
    assert (response.json()["statecode"], response.json()["statuscode"]) == (1, 3)
    draft = dataverse.session.post(
        dataverse.url("emails?$select=statecode,statuscode"),
        json={},
        headers={"Prefer": "return=representation"},
    )
    assert (draft.json()["statecode"], draft.json()["statuscode"]) == (0, 1)


def test_not_found_and_unknown_entity_set(dataverse):
    missing = str(uuid.uuid4())
    error = _error(dataverse.session.get(dataverse.url(f"accounts({missing})")), 404)
    assert error == {"code": "0x80040217", "message": f"account With Id = {missing} Does Not Exist"}
    assert _error(dataverse.session.get(dataverse.url("nosuchthings")), 404)["code"] == "0x8006088a"
    assert _error(dataverse.session.put(dataverse.url("emails"), json={}), 405)["code"] == "0x80060888"


def test_unknown_columns_in_query_options(dataverse):
    error = _error(dataverse.session.get(dataverse.url("accounts?$select=name,bogus")), 400)
    assert error == {
        "code": "0x80060888",
        "message": "Could not find a property named 'bogus' on type 'Microsoft.Dynamics.CRM.account'.",
    }
    assert (
        _error(dataverse.session.get(dataverse.url("accounts?$filter=bogus eq 1")), 400)["code"]
        == "0x80060888"
    )
    assert (
        _error(dataverse.session.get(dataverse.url("accounts?$filter=name eq")), 400)["code"] == "0x80060888"
    )
    assert (
        _error(dataverse.session.get(dataverse.url("emails?$select=regardingobjectid")), 400)["code"]
        == "0x80060888"
    )


def test_invalid_json_body(dataverse):
    response = dataverse.session.post(
        dataverse.url("emails"), data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert _error(response, 400)["code"] == "0x80048d19"


def test_tokens_are_required_and_checked(dataverse):
    import requests

    url = dataverse.url("WhoAmI")
    anonymous = requests.get(url, verify=dataverse.ca_path, timeout=10)
    assert anonymous.status_code == 401 and anonymous.content == b""
    assert anonymous.headers["WWW-Authenticate"].startswith(f"Bearer authorization_uri={dataverse.org_url}")
    forged = requests.get(
        url, verify=dataverse.ca_path, timeout=10, headers={"Authorization": "Bearer abc.def.ghi"}
    )
    assert forged.status_code == 401
    assert dataverse.crm.faults.injected["unauthorized"] == 2
