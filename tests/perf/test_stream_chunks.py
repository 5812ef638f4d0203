"""Streams are read in chunks, not byte by byte: an envelope split anywhere across chunks still parses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from exchangelib import BASIC, DELEGATE, UTC, Account, Build, Configuration, Credentials, Version
from exchangelib.properties import MovedEvent

from foldertrack.exchange.envelopes import EnvelopeSplitter
from foldertrack.watch.streaming import HeartbeatStreamingEvents

_NS = (
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"'
)


def envelope(body: str, status: str = "OK") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f"<m:GetStreamingEventsResponse {_NS}><m:ResponseMessages>"
        '<m:GetStreamingEventsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{body}<m:ConnectionStatus>{status}</m:ConnectionStatus></m:GetStreamingEventsResponseMessage>"
        "</m:ResponseMessages></m:GetStreamingEventsResponse></s:Body></s:Envelope>"
    ).encode()


MOVED = envelope(
    "<m:Notifications><m:Notification><t:SubscriptionId>sub-1</t:SubscriptionId><t:MovedEvent>"
    "<t:TimeStamp>2026-11-29T10:00:00Z</t:TimeStamp>"
    '<t:ItemId Id="item-new" ChangeKey="ck"/><t:ParentFolderId Id="folder-dest" ChangeKey="f"/>'
    '<t:OldItemId Id="item-old" ChangeKey="ck"/><t:OldParentFolderId Id="folder-src" ChangeKey="f"/>'
    "</t:MovedEvent></m:Notification></m:Notifications>"
)
HEARTBEAT = envelope("")
CLOSED = envelope("", status="Closed")
STREAM = MOVED + b"\r\n" + HEARTBEAT + CLOSED


def test_every_split_point_yields_the_same_envelopes() -> None:
    for cut in range(1, len(STREAM)):
        splitter = EnvelopeSplitter()
        docs = splitter.feed(STREAM[:cut]) + splitter.feed(STREAM[cut:])
        assert [d.split(b"<s:Envelope", 1)[1] for d in docs] == [
            e.split(b"<s:Envelope", 1)[1] for e in (MOVED, HEARTBEAT, CLOSED)
        ], cut


def test_byte_by_byte_and_uneven_chunks() -> None:
    for size in (1, 2, 7, 64, 1000):
        splitter = EnvelopeSplitter()
        docs = [d for i in range(0, len(STREAM), size) for d in splitter.feed(STREAM[i : i + size])]
        assert len(docs) == 3 and docs[0].endswith(b"</s:Envelope>") and b"item-new" in docs[0]


def test_envelope_without_prefix_and_with_attributes() -> None:
    text = b'junk<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body/></Envelope>tail'
    splitter = EnvelopeSplitter()
    docs = [d for b in text for d in splitter.feed(bytes([b]))]
    assert docs == [text[4:-4]]


class _ChunkedStream(BaseHTTPRequestHandler):
    """Answers any POST with STREAM in HTTP chunks cut mid-tag (inside ``</s:Envelope>`` among others)."""

    cuts: list[int] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start = 0
        for end in [*self.cuts, len(STREAM)]:
            piece = STREAM[start:end]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
            start = end
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stream_server() -> Iterator[str]:
    end_tag = MOVED.rindex(b"</s:Envelope>")
    _ChunkedStream.cuts = sorted({5, 90, end_tag + 4, len(MOVED) + 1, len(MOVED) + 20, len(STREAM) - 3})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChunkedStream)
    thread = threading.Thread(target=server.serve_forever, name="chunked-stream-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/EWS/Exchange.asmx"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_notification_split_across_http_chunks_parses(stream_server: str) -> None:
    """The real exchangelib client over real HTTP: the split notification arrives whole, once."""
    config = Configuration(
        service_endpoint=stream_server,
        credentials=Credentials("user@example.com", "pw"),
        auth_type=BASIC,
        version=Version(build=Build(15, 1, 2375, 7), api_version="Exchange2016"),
        max_connections=2,
    )
    account = Account(
        "user@example.com", config=config, autodiscover=False, access_type=DELEGATE, default_timezone=UTC
    )
    envelopes: list[int] = []
    service = HeartbeatStreamingEvents(
        account=account, on_open=lambda: None, on_envelope=lambda: envelopes.append(1)
    )
    try:
        notifications = list(service.call(subscription_ids=["sub-1"], connection_timeout=1))
    finally:
        account.protocol.close()
    events = [e for n in notifications for e in n.events]
    assert len(events) == 1 and isinstance(events[0], MovedEvent)
    assert (events[0].item_id.id, events[0].parent_folder_id.id) == ("item-new", "folder-dest")
    assert events[0].old_parent_folder_id.id == "folder-src"
    assert len(envelopes) == 3  # the heartbeat and the Closed envelope were read too
    assert service.connection_status == service.CLOSED
