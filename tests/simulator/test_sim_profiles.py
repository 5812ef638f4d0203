"""Server profiles: each reproduces one way real EWS servers differ from Exchange, switchable at run time."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
import requests
from exchangelib.errors import ErrorInvalidSubscription, TransportError
from exchangelib.properties import StatusEvent

from foldertrack.simulator import MailSpec
from foldertrack.simulator.profiles import EXCHANGE, PROFILES, profile_named
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.soap import find, parse, post, soap_envelope

ALICE, BOB = "alice@example.com", "bob@example.com"
SVC = "svc@example.com"


@pytest.fixture
def sim(simulator_factory):
    sim = simulator_factory(minute=1.0, heartbeat=0.2)  # a 1 "minute" stream lasts 1 s
    sim.add_mailbox(ALICE)
    sim.add_mailbox(BOB)
    sim.add_service_account(SVC, "svc-pw")
    return sim


def impersonating(sim, address):
    return exchangelib_account(sim, address, "svc-pw", user=SVC, impersonate=True)


def test_profiles_are_named_and_switchable(sim):
    assert sim.profile is EXCHANGE and "independent" in PROFILES
    assert sim.use_profile("tick-timestamps").fraction_digits == 9
    assert sim.profile.name == "tick-timestamps"
    with pytest.raises(ValueError, match="unknown server profile"):
        profile_named("nope")


def test_single_user_streams_refuse_other_users_subscriptions(sim):
    sim.use_profile("single-user-streams")
    alice, bob = impersonating(sim, ALICE), impersonating(sim, BOB)
    alice_sub, bob_sub = alice.inbox.subscribe_to_streaming(), bob.inbox.subscribe_to_streaming()
    with pytest.raises(ErrorInvalidSubscription):
        list(alice.inbox.get_streaming_events([alice_sub, bob_sub], connection_timeout=1))
    body = (
        f"<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{alice_sub}</t:SubscriptionId>"
        f"<t:SubscriptionId>{bob_sub}</t:SubscriptionId></m:SubscriptionIds>"
        "<m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>"
    )
    header = f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{ALICE}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
    root = parse(post(sim, soap_envelope(body, header=header), (SVC, "svc-pw")))
    assert find(root, "//m:ResponseCode/text()") == ["ErrorInvalidSubscription"]
    assert find(root, "//m:ErrorSubscriptionIds/t:SubscriptionId/text()") == [
        bob_sub
    ]  # only the other user's
    sim.deliver(ALICE, MailSpec(subject="own stream"))
    events = [e for n in alice.inbox.get_streaming_events(alice_sub, connection_timeout=1) for e in n.events]
    assert events  # one user's subscriptions stream fine
    sim.use_profile("exchange")
    assert list(alice.inbox.get_streaming_events([alice_sub, bob_sub], connection_timeout=1)) == []


def test_tick_timestamps_have_nine_fraction_digits(sim):
    sim.use_profile("tick-timestamps")
    item_id = sim.deliver(ALICE, MailSpec(subject="ticks"))
    body = (
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>"
        '<t:FieldURI FieldURI="item:DateTimeReceived"/></t:AdditionalProperties></m:ItemShape>'
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>'
    )
    (received,) = find(parse(post(sim, soap_envelope(body), (ALICE, "pw"))), "//t:DateTimeReceived/text()")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", received)


def test_html_only_bodies_ignore_text_body(sim):
    sim.use_profile("html-only-bodies")
    sim.deliver(ALICE, MailSpec(subject="html", body="plain words", html_body="<p>rich <b>words</b></p>"))
    account = exchangelib_account(sim, ALICE)
    (item,) = account.inbox.all().only("text_body", "body")
    assert item.text_body is None
    assert type(item.body).__name__ == "HTMLBody" and "<b>words</b>" in item.body
    sim.use_profile("exchange")
    (item,) = account.inbox.all().only("text_body", "body")
    assert item.text_body.strip() == "plain words"


def test_status_event_heartbeats(sim):
    sim.use_profile("status-heartbeats")
    account = exchangelib_account(sim, ALICE)
    sub_id = account.inbox.subscribe_to_streaming()
    notifications = list(account.inbox.get_streaming_events(sub_id, connection_timeout=1))
    assert notifications and all(isinstance(e, StatusEvent) for n in notifications for e in n.events)
    assert all(n.subscription_id == sub_id for n in notifications)


def test_lost_subscriptions_with_another_code(sim):
    sim.use_profile("unsubscribed-code")
    account = exchangelib_account(sim, ALICE)
    sub_id = account.inbox.subscribe_to_streaming()
    sim.faults.expire_subscriptions()
    with pytest.raises(TransportError, match="ErrorSubscriptionUnsubscribed"):  # a code exchangelib lacks
        list(account.inbox.get_streaming_events(sub_id, connection_timeout=1))


def test_batched_notifications_arrive_together(sim):
    sim.use_profile("batched-notifications")
    account = exchangelib_account(sim, ALICE)
    sub_id = account.inbox.subscribe_to_streaming()
    started = time.monotonic()
    sim.deliver(ALICE, MailSpec(subject="first"))
    sim.deliver(ALICE, MailSpec(subject="second"))
    with_events = []
    for notification in account.inbox.get_streaming_events(sub_id, connection_timeout=1):
        if notification.events:
            with_events.append((time.monotonic() - started, len(notification.events)))
            break
    (elapsed, count), batch = with_events[0], sim.profile.notification_batch_seconds
    assert count == 6  # both mails' Created, NewMail and folder Modified events in one notification
    assert elapsed <= batch + 0.3


def test_profile_from_the_control_endpoint(sim):
    response = requests.post(
        sim.control_url, json={"action": "use_profile", "name": "html-only-bodies"}, timeout=5
    )
    assert response.status_code == 200 and response.json()["profile"] == "html-only-bodies"
    assert sim.profile.text_body is False
    bad = requests.post(sim.control_url, json={"action": "use_profile", "name": "nope"}, timeout=5)
    assert bad.status_code == 400 and "unknown server profile" in bad.json()["error"]


def test_request_validation_is_switchable_per_profile(sim):
    body = (
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
        "<m:ItemIds><t:ItemId/></m:ItemIds></m:GetItem>"
    )
    root = parse(post(sim, soap_envelope(body), (ALICE, "pw")))
    assert find(root, "//e:ResponseCode/text()") == ["ErrorSchemaValidation"]
    sim.use_profile(dataclasses.replace(EXCHANGE, name="lenient", validate_requests=False))
    root = parse(post(sim, soap_envelope(body), (ALICE, "pw")))
    assert find(root, "//m:ResponseCode/text()") == ["ErrorInvalidIdEmpty"]  # the handler's own check
