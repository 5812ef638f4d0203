"""One streaming connection shared by several mailboxes: changing its subscriptions loses no event.

When a subscription leaves a shared stream (its lease went to another instance, its rules changed), the
stream is closed and re-issued. Until the server holds the new connection it may write events to the old,
closed one, which is what real servers do too; those events are gone. So the mailboxes still on the
stream must catch up *after* the new connection is open, not when the old one is closed.
"""

from __future__ import annotations

import threading

from exchangelib.properties import FolderId
from exchangelib.services import SubscribeToStreaming

from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.simulator import MailSpec
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.watch.streaming import StreamGroup, Subscription
from foldertrack.watch.subscribing import EVENT_TYPES

ALICE, BOB = "alice@example.com", "bob@example.com"


class Recorder:
    """The group's callbacks, recorded in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def record(self, kind: str, mailboxes) -> None:
        with self.lock:
            self.calls.append((kind, tuple(mailboxes)))

    def since(self, index: int) -> list[tuple[str, tuple[str, ...]]]:
        with self.lock:
            return self.calls[index:]

    def mark(self) -> int:
        with self.lock:
            return len(self.calls)


def _group(connector: ExchangeConnector, recorder: Recorder) -> StreamGroup:
    return StreamGroup(
        0,
        connector,
        on_notification=lambda mailbox, _n: recorder.record("notification", [mailbox]),
        on_stream_lost=lambda mailboxes, _e: recorder.record("lost", mailboxes),
        on_subscriptions_lost=lambda mailboxes, _e: recorder.record("subscriptions-lost", mailboxes),
        on_connected=lambda mailboxes: recorder.record("connected", mailboxes),
        on_reissued=lambda mailboxes, _reason: recorder.record("catch-up", mailboxes),
    )


def test_an_event_filed_while_a_shared_stream_is_reissued_is_never_lost(simulator_factory):
    sim = simulator_factory(heartbeat=0.5)
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    connector = ExchangeConnector(
        ExchangeSettings(endpoint=sim.url, auth="basic", username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD),
        max_connections=4,
    )
    subs = {}
    for address in (ALICE, BOB):
        sim.add_mailbox(address, password=USER_PASSWORD)
        folder_id = sim.mailbox(address).create_folder("Inbox/CRM")
        sub_id = SubscribeToStreaming(account=connector.account(address)).get(
            folders=[FolderId(id=folder_id)], event_types=EVENT_TYPES
        )
        subs[address] = Subscription(address, sub_id, frozenset({folder_id}))
    recorder = Recorder()
    group = _group(connector, recorder)
    group.add(subs[ALICE])
    group.add(subs[BOB])
    group.start()
    try:
        wait_until(lambda: ("connected", (ALICE, BOB)) in recorder.since(0), 10, "one stream carrying both")
        for round_no in range(5):
            # Bob leaves (and comes back): each time the stream is closed and re-issued while Alice gets mail
            if round_no % 2 == 0:
                group.remove(subs[BOB].subscription_id)
            else:
                group.add(subs[BOB])
            sim.deliver(
                ALICE, MailSpec(subject=f"during re-issue {round_no}", to=[ALICE]), folder="Inbox/CRM"
            )
            mark = recorder.mark()  # a catch-up that started before the mail was filed does not count
            wait_until(
                lambda mark=mark: any(
                    ALICE in mailboxes
                    for kind, mailboxes in recorder.since(mark)
                    if kind in ("notification", "catch-up")
                ),
                10,
                f"Alice's mail of round {round_no} notified, or Alice caught up after the new stream opened",
            )
        assert not [c for c in recorder.since(0) if c[0] in ("lost", "subscriptions-lost")]
    finally:
        group.stop()
        connector.close()
