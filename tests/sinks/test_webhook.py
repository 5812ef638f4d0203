"""The webhook sink against a real HTTP receiver on 127.0.0.1: signed JSON bodies, idempotency keys, the
transient/permanent split of answers, TLS verification, the payload schema, configuration."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from datetime import UTC, datetime

import jsonschema
import pytest

from foldertrack.config import parse_config
from foldertrack.errors import ConfigError, PermanentSinkError, TransientSinkError
from foldertrack.model import Activity, Attachment, Party, RecordRef
from foldertrack.sinks.base import Delivery, delivering
from foldertrack.sinks.registry import load_sink
from foldertrack.sinks.webhook import (
    SIGNATURE_HEADER,
    WebhookActivitySink,
    escape_message,
    payload_schema,
    sign,
    verify_signature,
)
from foldertrack.testing.webhook_receiver import Answer, WebhookReceiver

SECRET = "whsec-test"
CONTOSO = RecordRef("account", "acc-001", "Contoso")
FABRIKAM = RecordRef("account", "acc-002", "Fabrikam")


def make_activity(**overrides) -> Activity:
    values = dict(
        key="<m1@contoso.example>",
        mailbox="alice@contoso.example",
        folder_id="AAMkF1",
        folder_path="Inbox/Customers/Contoso",
        message_id="<m1@contoso.example>",
        subject="Quote",
        direction="incoming",
        regarding=CONTOSO,
        conversation_id="conv-1",
        text_body="Hello",
        html_body="<p>Hello</p>",
        sender="bob@contoso.example",
        sent_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        received_at=datetime(2026, 1, 5, 9, 1, tzinfo=UTC),
        parties=(
            Party("from", "bob@contoso.example", "Bob", RecordRef("contact", "con-1")),
            Party("to", "alice@contoso.example", "Alice"),
        ),
        attachments=(
            Attachment("quote.pdf", "application/pdf", 5, b"%PDF-"),
            Attachment("huge.zip", "application/zip", 50_000_000, None),
        ),
    )
    return Activity(**(values | overrides))


@pytest.fixture
def sink(webhook_receiver: WebhookReceiver):
    sink = WebhookActivitySink(webhook_receiver.url, SECRET, timeout=5.0)
    yield sink
    sink.close()


# -- what is sent ----------------------------------------------------------------------------------------


def test_upsert_posts_one_signed_json_body_per_decision(sink, webhook_receiver):
    assert sink.upsert(make_activity()) == "created"

    [request] = webhook_receiver.requests
    assert request.signature_ok
    assert request.path == "/hooks/crm"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["x-foldertrack-event"] == "upsert"
    assert request.headers["user-agent"].startswith("foldertrack/")
    body = request.json
    assert body["op"] == "upsert" and body["version"] == 1
    assert body["idempotency_key"] == request.idempotency_key
    assert body["key"] == "<m1@contoso.example>"
    assert body["mailbox"] == "alice@contoso.example"
    activity = body["activity"]
    assert activity["regarding"] == {"type": "account", "id": "acc-001", "name": "Contoso"}
    assert activity["sent_at"] == "2026-01-05T09:00:00+00:00"
    assert activity["text_body"] == "Hello"
    assert activity["parties"][0] == {
        "role": "from",
        "address": "bob@contoso.example",
        "name": "Bob",
        "record": {"type": "contact", "id": "con-1", "name": None},
    }
    pdf, huge = activity["attachments"]
    assert pdf["sha256"] and "content_base64" not in pdf  # content only with include_attachments
    assert huge["sha256"] is None and huge["size"] == 50_000_000


def test_signature_is_hmac_sha256_over_timestamp_and_raw_body(sink, webhook_receiver):
    sink.upsert(make_activity())
    [request] = webhook_receiver.requests
    header = request.headers[SIGNATURE_HEADER.lower()]
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert abs(stamp - time.time()) < 60
    assert header == sign(SECRET.encode(), request.body, stamp)
    assert verify_signature(SECRET.encode(), header, request.body)
    assert not verify_signature(b"other-secret", header, request.body)
    assert not verify_signature(SECRET.encode(), header, request.body + b" ")
    assert not verify_signature(SECRET.encode(), header, request.body, now=stamp + 301)  # a replay
    assert not verify_signature(SECRET.encode(), "v1=abc", request.body)


def test_a_receiver_rejecting_the_signature_is_a_permanent_error(webhook_receiver):
    wrong = WebhookActivitySink(webhook_receiver.url, "not-the-secret")
    try:
        with pytest.raises(PermanentSinkError) as caught:
            wrong.upsert(make_activity())
    finally:
        wrong.close()
    assert caught.value.code == "bad_signature"
    assert "HTTP 401" in str(caught.value) and "signature mismatch" in str(caught.value)
    assert not webhook_receiver.requests[0].signature_ok and not webhook_receiver.applied


def test_the_same_decision_repeats_its_key_and_body_a_new_decision_gets_a_new_key(sink, webhook_receiver):
    assert sink.upsert(make_activity()) == "created"
    assert sink.upsert(make_activity()) == "created"  # a retry: the receiver replays its first answer
    assert sink.upsert(make_activity(regarding=FABRIKAM)) == "updated"
    assert sink.untrack("<m1@contoso.example>") is True

    first, repeat, relink, untrack = webhook_receiver.requests
    assert repeat.idempotency_key == first.idempotency_key and repeat.body == first.body
    keys = {first.idempotency_key, relink.idempotency_key, untrack.idempotency_key}
    assert len(keys) == 3
    assert [a["op"] for a in webhook_receiver.applied] == ["upsert", "upsert", "untrack"]
    assert webhook_receiver.state["<m1@contoso.example>"]["regarding"] is None


def test_inside_a_delivery_the_outbox_entry_key_is_the_idempotency_key(sink, webhook_receiver):
    # Bob filed the mail too; the activity stays Alice's (she tracked it first)
    entry = Delivery(7, "ob-7-deadbeef", "upsert", "<m1@contoso.example>", "bob@contoso.example", 2)
    with delivering(entry):
        sink.upsert(make_activity())
    untrack = Delivery(8, "ob-8-cafe", "untrack", "<m1@contoso.example>", "alice@contoso.example", 1)
    with delivering(untrack):
        assert sink.untrack("<m1@contoso.example>") is True
    first, second = webhook_receiver.requests
    assert first.idempotency_key == "ob-7-deadbeef" == first.json["idempotency_key"]
    assert first.json["mailbox"] == "bob@contoso.example"
    assert first.json["activity"]["mailbox"] == "alice@contoso.example"
    assert second.idempotency_key == "ob-8-cafe"
    assert second.json == {
        "version": 1,
        "idempotency_key": "ob-8-cafe",
        "op": "untrack",
        "key": "<m1@contoso.example>",
        "mailbox": "alice@contoso.example",
    }


def test_untrack_and_delete_of_an_unknown_activity_return_false(sink, webhook_receiver):
    assert sink.untrack("<nobody@example>") is False
    assert sink.delete("<nobody@example>") is False
    sink.upsert(make_activity())
    assert sink.delete("<m1@contoso.example>") is True
    assert webhook_receiver.state == {}
    assert [r.status for r in webhook_receiver.requests] == [404, 404, 201, 200]


def test_body_and_attachment_content_follow_the_settings(webhook_receiver):
    quiet = WebhookActivitySink(webhook_receiver.url, SECRET, include_body=False, include_attachments=True)
    try:
        quiet.upsert(make_activity())
    finally:
        quiet.close()
    activity = webhook_receiver.requests[0].json["activity"]
    assert activity["text_body"] is None and activity["html_body"] is None
    pdf, huge = activity["attachments"]
    assert pdf["content_base64"] == "JVBERi0="  # b"%PDF-"
    assert "content_base64" not in huge  # over the size limit: never stored, so never sent


# -- how answers are classified --------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_transient_and_the_retry_repeats_the_request(sink, webhook_receiver):
    webhook_receiver.answer(Answer(429, {"Retry-After": "7"}, {"error": {"message": "slow down"}}))
    with pytest.raises(TransientSinkError) as caught:
        sink.upsert(make_activity())
    assert caught.value.retry_after == 7.0
    assert caught.value.code == "429"
    assert "HTTP 429" in str(caught.value) and "slow down" in str(caught.value)

    assert sink.upsert(make_activity()) == "created"  # delivery's retry
    throttled, retried = webhook_receiver.requests
    assert retried.idempotency_key == throttled.idempotency_key and retried.body == throttled.body
    assert len(webhook_receiver.applied) == 1


def test_503_with_an_http_date_retry_after_is_transient(sink, webhook_receiver):
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    webhook_receiver.answer(Answer(503, {"Retry-After": later}, b"maintenance"))
    with pytest.raises(TransientSinkError) as caught:
        sink.untrack("<m1@contoso.example>")
    assert 25 <= caught.value.retry_after <= 31
    assert "HTTP 503" in str(caught.value) and "maintenance" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_server_errors_are_transient_without_retry_after(sink, webhook_receiver, status):
    webhook_receiver.answer(Answer(status, body=b"boom"))
    with pytest.raises(TransientSinkError) as caught:
        sink.upsert(make_activity())
    assert caught.value.retry_after is None
    assert caught.value.code == str(status)


def test_400_is_permanent_with_the_receivers_message_escaped_and_cut(sink, webhook_receiver):
    message = "field subject\r\ntoo long\x1b[31m" + "x" * 2000
    webhook_receiver.answer(Answer(400, body={"error": {"code": "E_SUBJECT", "message": message}}))
    with pytest.raises(PermanentSinkError) as caught:
        sink.upsert(make_activity())
    text = str(caught.value)
    assert caught.value.code == "E_SUBJECT"
    assert "HTTP 400 Bad Request: field subject\\x0d\\x0atoo long\\x1b[31m" in text
    assert "\n" not in text and "\x1b" not in text
    assert len(text) < 700 and text.endswith("…")


def test_a_plain_text_4xx_answer_is_the_message(sink, webhook_receiver):
    webhook_receiver.answer(Answer(422, {"Content-Type": "text/plain"}, b"unknown record acc-001"))
    with pytest.raises(PermanentSinkError, match=r"HTTP 422 .*: unknown record acc-001") as caught:
        sink.upsert(make_activity())
    assert caught.value.code == "422"


def test_redirects_are_not_followed(sink, webhook_receiver):
    webhook_receiver.answer(Answer(302, {"Location": "https://elsewhere.example/hook"}))
    with pytest.raises(
        PermanentSinkError, match=r"redirect to 'https://elsewhere.example/hook' not followed"
    ):
        sink.upsert(make_activity())
    assert len(webhook_receiver.requests) == 1


def test_a_slow_receiver_times_out_as_transient(webhook_receiver):
    webhook_receiver.answer(Answer(200, delay=30))
    slow = WebhookActivitySink(webhook_receiver.url, SECRET, timeout=0.3)
    try:
        with pytest.raises(TransientSinkError, match=r"no answer within 0\.3s") as caught:
            slow.upsert(make_activity())
    finally:
        slow.close()
    assert caught.value.code == "timeout"


def test_connection_refused_is_transient_and_names_the_cause():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = WebhookActivitySink(f"http://user:hunter2@127.0.0.1:{port}/hook?token=abc", SECRET, timeout=2)
    try:
        with pytest.raises(TransientSinkError) as caught:
            sink.upsert(make_activity())
    finally:
        sink.close()
    text = str(caught.value)
    assert caught.value.code == "connection"
    assert "Connection refused" in text
    assert f"http://127.0.0.1:{port}/hook" in text
    assert "hunter2" not in text and "token=abc" not in text and SECRET not in text


def test_tls_is_verified_by_default_and_a_ca_file_makes_it_pass(tmp_path):
    from foldertrack.simulator.tls import make_certificates

    certs = make_certificates()
    try:
        with WebhookReceiver(SECRET, tls=(certs.cert_path, certs.key_path)) as receiver:
            # a token in the URL's query must not reach the error (requests puts the URL in its text)
            untrusting = WebhookActivitySink(receiver.url + "?token=SUPERSECRET", SECRET, timeout=5)
            trusting = WebhookActivitySink(receiver.url, SECRET, timeout=5, ca_file=certs.ca_path)
            try:
                with pytest.raises(
                    TransientSinkError, match=r"TLS failed: .*CERTIFICATE_VERIFY_FAILED"
                ) as caught:
                    untrusting.upsert(make_activity())
                assert caught.value.code == "tls" and "SUPERSECRET" not in str(caught.value)
                assert trusting.upsert(make_activity()) == "created"
            finally:
                untrusting.close()
                trusting.close()
            assert len(receiver.applied) == 1 and receiver.requests[-1].signature_ok
    finally:
        certs.remove()


# -- the payload schema ----------------------------------------------------------------------------------


def test_every_kind_of_body_validates_against_the_shipped_schema(webhook_receiver):
    validator = jsonschema.Draft202012Validator(payload_schema())
    validator.check_schema(payload_schema())
    full = WebhookActivitySink(webhook_receiver.url, SECRET, include_attachments=True)
    try:
        full.upsert(make_activity())
        full.upsert(
            make_activity(key="<m2@x>", regarding=None, state="untracked", parties=(), attachments=())
        )
        full.upsert(make_activity(key="<m3@x>", message_id=None, subject=None, sent_at=None, sender=None))
        full.untrack("<m1@contoso.example>")
        full.delete("<m2@x>")
    finally:
        full.close()
    bodies = [r.json for r in webhook_receiver.requests]
    assert [b["op"] for b in bodies] == ["upsert", "upsert", "upsert", "untrack", "delete"]
    for body in bodies:
        validator.validate(body)  # the fixture checks it again at teardown, for every test


def test_the_schema_rejects_what_receivers_must_not_get():
    validator = jsonschema.Draft202012Validator(payload_schema())
    good = {"version": 1, "idempotency_key": "k", "op": "untrack", "key": "<a@b>", "mailbox": "a@b"}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "op": "upsert"})  # an upsert needs its activity
    assert not validator.is_valid({**good, "op": "merge"})
    assert not validator.is_valid({**good, "extra": 1})
    assert not validator.is_valid({**good, "activity": {}})  # only upserts carry one


def test_escape_message_keeps_one_line():
    assert escape_message("a\tb\nc\x7f") == "a\\x09b\\x0ac\\x7f"
    assert escape_message("é" * 10, limit=5) == "éééé…"


# -- configuration and plug-in loading -------------------------------------------------------------------


def test_the_plug_in_loads_from_the_config_with_the_secret_from_the_environment(webhook_receiver):
    config = parse_config(
        {"sink": {"name": "webhook"}, "webhook": {"url": webhook_receiver.url, "max_concurrency": 2}},
        env={"FOLDERTRACK_WEBHOOK_SECRET": SECRET},
    )
    assert SECRET not in repr(config.webhook)
    sink = load_sink("webhook", config, None)
    try:
        assert isinstance(sink, WebhookActivitySink) and sink.max_concurrency == 2
        assert sink.verify is True
        assert sink.upsert(make_activity()) == "created"
    finally:
        sink.close()
    assert webhook_receiver.requests[0].signature_ok


def test_the_secret_can_come_from_a_file_or_a_systemd_credential(tmp_path, webhook_receiver):
    (tmp_path / "webhook-secret").write_text(SECRET + "\n")
    for settings, env in [
        ({"secret_file": str(tmp_path / "webhook-secret")}, {}),
        ({}, {"CREDENTIALS_DIRECTORY": str(tmp_path)}),
    ]:
        config = parse_config({"webhook": {"url": webhook_receiver.url, **settings}}, env=env)
        sink = WebhookActivitySink.create(config, None)
        try:
            sink.untrack("<m1@contoso.example>")
        finally:
            sink.close()
    assert all(r.signature_ok for r in webhook_receiver.requests) and len(webhook_receiver.requests) == 2


def test_missing_url_or_secret_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"webhook\.url is not set"):
        WebhookActivitySink.create(parse_config({}, env={}), None)
    config = parse_config({"webhook": {"url": "https://crm.example/hook"}}, env={})
    with pytest.raises(ConfigError, match=r"webhook secret is not set .*\$FOLDERTRACK_WEBHOOK_SECRET"):
        WebhookActivitySink.create(config, None)
    config = parse_config(
        {"webhook": {"url": "https://crm.example/hook", "secret_file": str(tmp_path / "nope")}}, env={}
    )
    with pytest.raises(ConfigError, match=r"webhook\.secret_file .*nope: cannot read secret"):
        WebhookActivitySink.create(config, None)


def test_webhook_settings_are_validated():
    with pytest.raises(ConfigError) as caught:
        parse_config({"webhook": {"url": "ftp://x", "max_concurrency": 0, "timeout": "0s"}}, env={})
    text = str(caught.value)
    assert "webhook.url" in text and "webhook.max_concurrency" in text and "webhook.timeout" in text


def test_bodies_are_deterministic_json(sink):
    _, first = sink.body("upsert", "<k@x>", "a@b", {"x": 1})
    _, again = sink.body("upsert", "<k@x>", "a@b", {"x": 1})
    assert first == again and json.loads(first)["idempotency_key"].startswith("ft1-")


# -- end to end: the watcher, the outbox, the webhook ----------------------------------------------------

E2E_RULES = """
mailboxes:
  - address: alice@example.com
    folders:
      Inbox/Customers/Contoso:
        record: account:acc-contoso
        on_leave: untrack
      Inbox/Customers/Legal:
        record: account:acc-fabrikam
        send: {body: false}
        on_leave: delete
"""


def start_watcher_with(h, sink, feedback_factory=None):
    """The harness's watcher, but with ``sink`` fed by the outbox (and mailbox feedback if given)."""
    from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
    from foldertrack.sources.ews import EwsSource
    from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD
    from foldertrack.watch.daemon import Watcher, WatchOptions

    options = WatchOptions(rules_dir=h.rules_dir, **h.options)
    settings = ExchangeSettings(
        endpoint=h.sim.url, auth="basic", username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD
    )
    connector = ExchangeConnector(settings, max_connections=options.workers + 8)
    source = EwsSource(connector)  # feedback writes through the watcher's own source
    feedback = feedback_factory(source, h.engine) if feedback_factory else None
    h.watcher = Watcher(options, h.engine, connector, sink, feedback=feedback, source=source)
    h.watcher.start()
    assert h.watcher.ready.wait(20), "watcher did not become ready"
    return h.watcher


def pending_entries(h) -> int:
    from sqlalchemy import func, select

    from foldertrack.state.schema import outbox

    with h.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
        ).scalar()


@pytest.fixture
def e2e(simulator_factory, tmp_path):
    from foldertrack.testing.harness import Harness, options_for_tests

    sim = simulator_factory(heartbeat=0.5)
    with Harness(tmp_path, simulator=sim, **options_for_tests()) as h:
        h.import_records(
            "type,id,name,number,emails\naccount,acc-contoso,Contoso,,\naccount,acc-fabrikam,F,,\n"
        )
        mailbox = h.add_mailbox("alice@example.com")
        for path in ("Inbox/Customers/Contoso", "Inbox/Customers/Legal"):
            mailbox.create_folder(path)
        h.write_rules(E2E_RULES)
        yield h, mailbox


def test_end_to_end_one_post_per_decision_retried_idempotently_after_503(e2e, webhook_receiver):
    from foldertrack.simulator import MailSpec

    h, mailbox = e2e
    webhook_receiver.answer(Answer(503, {"Retry-After": "1"}, b"warming up"))
    start_watcher_with(h, WebhookActivitySink(webhook_receiver.url, SECRET))
    item = mailbox.deliver(
        MailSpec(subject="Quote", sender="dana@contoso.com", to=["alice@example.com"], body="hi")
    )
    mailbox.move_item(item, "Inbox/Customers/Contoso")

    h.wait_for(lambda: len(webhook_receiver.applied) == 1, what="the upsert, after the 503")
    refused, delivered = webhook_receiver.requests
    assert (refused.status, delivered.status) == (503, 201)
    assert delivered.idempotency_key == refused.idempotency_key and delivered.body == refused.body
    assert delivered.signature_ok
    upsert = delivered.json
    assert upsert["op"] == "upsert" and upsert["mailbox"] == "alice@example.com"
    assert upsert["activity"]["regarding"]["id"] == "acc-contoso"
    assert upsert["activity"]["text_body"].strip() == "hi"
    key = upsert["key"]

    # re-link into Legal (body not sent there), then out of tracking: on_leave delete. Exchange reports
    # the move as a delete in Contoso and a create in Legal; whichever folder syncs first, the CRM ends
    # up regarding Fabrikam (a re-link, or an untrack followed by a re-track)
    [current] = mailbox.item_ids("Inbox/Customers/Contoso")
    moved = mailbox.move_item(current, "Inbox/Customers/Legal")

    def regarding() -> str | None:
        return ((webhook_receiver.state.get(key) or {}).get("regarding") or {}).get("id")

    h.wait_for(lambda: regarding() == "acc-fabrikam", what="the re-link")
    mailbox.move_item(moved, "Inbox")
    h.wait_for(lambda: webhook_receiver.applied[-1]["op"] == "delete", what="the delete")
    h.settle()
    h.wait_for(lambda: pending_entries(h) == 0, what="an empty outbox")

    ops = [a["op"] for a in webhook_receiver.applied]
    assert ops in (["upsert", "upsert", "delete"], ["upsert", "untrack", "upsert", "delete"]), ops
    assert {a["key"] for a in webhook_receiver.applied} == {key}
    relink = webhook_receiver.applied[-2]
    assert relink["activity"]["text_body"] is None and relink["activity"]["html_body"] is None
    keys = [r.idempotency_key for r in webhook_receiver.requests]
    assert len(keys) == len(ops) + 1 and len(set(keys)) == len(ops)  # one retry, a key per decision
    assert webhook_receiver.state == {}


def test_the_readme_verification_example_accepts_what_the_sink_sends(sink, webhook_receiver):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Webhook\n") :]
    [example] = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "def verify(" in b][:1]
    namespace: dict = {}
    exec(example, namespace)
    sink.upsert(make_activity())
    [request] = webhook_receiver.requests
    header = request.headers[SIGNATURE_HEADER.lower()]
    assert namespace["verify"](SECRET.encode(), header, request.body)
    assert not namespace["verify"](b"wrong", header, request.body)
    assert not namespace["verify"](SECRET.encode(), header, request.body.replace(b"Quote", b"Quota"))
