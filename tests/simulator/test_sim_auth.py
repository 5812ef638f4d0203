"""Basic auth per mailbox, service-account impersonation, 401 and ErrorImpersonateUserDenied."""

from __future__ import annotations

import pytest
import requests
from exchangelib.errors import ErrorImpersonateUserDenied, ErrorNonExistentMailbox, UnauthorizedError

from foldertrack.simulator import MailSpec
from foldertrack.testing.fixtures_simulator import exchangelib_account


@pytest.fixture
def sim(simulator):
    simulator.add_mailbox("alice@example.com", password="alice-pw")
    simulator.add_mailbox("bob@example.com", password="bob-pw")
    simulator.add_service_account("svc@example.com", password="svc-pw", impersonation=True)
    simulator.add_service_account("weak@example.com", password="weak-pw", impersonation=False)
    return simulator


@pytest.mark.parametrize("explicit", [True, False])
def test_wrong_password_is_401(sim, explicit):
    account = None
    with pytest.raises(UnauthorizedError):
        account = exchangelib_account(sim, "alice@example.com", "wrong", explicit=explicit)
        account.inbox.all().count()
    assert account is None or sim.stats.snapshot()["counters"]["unauthorized"] >= 1


def test_401_carries_basic_challenge(sim):
    response = requests.post(sim.url, data=b"<x/>", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_each_mailbox_logs_in_with_its_own_password(sim):
    sim.deliver("bob@example.com", MailSpec(subject="for bob"))
    bob = exchangelib_account(sim, "bob@example.com", "bob-pw")
    assert [m.subject for m in bob.inbox.all()] == ["for bob"]


def test_service_account_impersonates_any_mailbox(sim):
    sim.deliver("alice@example.com", MailSpec(subject="for alice"))
    sim.deliver("bob@example.com", MailSpec(subject="for bob"))
    for owner, subject in (("alice@example.com", "for alice"), ("bob@example.com", "for bob")):
        account = exchangelib_account(sim, owner, "svc-pw", user="svc@example.com", impersonate=True)
        assert [m.subject for m in account.inbox.all()] == [subject]


def test_impersonation_without_the_right_is_denied(sim):
    weak = exchangelib_account(sim, "alice@example.com", "weak-pw", user="weak@example.com", impersonate=True)
    with pytest.raises(ErrorImpersonateUserDenied):
        weak.inbox.all().count()
    bob_as_alice = exchangelib_account(
        sim, "alice@example.com", "bob-pw", user="bob@example.com", impersonate=True
    )
    with pytest.raises(ErrorImpersonateUserDenied):
        bob_as_alice.inbox.all().count()


def test_impersonating_unknown_mailbox(sim):
    ghost = exchangelib_account(sim, "ghost@example.com", "svc-pw", user="svc@example.com", impersonate=True)
    with pytest.raises(ErrorNonExistentMailbox):
        ghost.inbox.all().count()


def test_malformed_requests_get_soap_faults_not_crashes(sim):
    auth = ("alice@example.com", "alice-pw")
    for body in (b"", b"not xml", b"<a/>", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>'):
        response = requests.post(sim.url, data=body, auth=auth, timeout=5)
        assert response.status_code == 500
        assert b"ErrorSchemaValidation" in response.content
    envelope = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        b'<m:%s xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"/>'
        b"</s:Body></s:Envelope>"
    )
    # not an EWS operation at all: the schema rejects it, as on Exchange
    response = requests.post(sim.url, data=envelope % b"Frobnicate", auth=auth, timeout=5)
    assert response.status_code == 500 and b"ErrorSchemaValidation" in response.content
    # a real operation the simulator does not implement
    response = requests.post(sim.url, data=envelope % b"GetServerTimeZones", auth=auth, timeout=5)
    assert response.status_code == 500 and b"ErrorInvalidOperation" in response.content
    assert requests.get(sim.url.replace("/EWS/Exchange.asmx", "/nope"), timeout=5).status_code == 404
