"""One feedback story on both mail sources, through the path production takes: delivery confirms a mail to
the CRM, :class:`MailboxFeedback` writes the category through the watcher's own ``MailSource`` (EWS or
Graph) and sees only the source-neutral errors (``ItemGone``, ``WriteBackDenied``).

The mail is tracked, delivered and marked; moved to another tracked folder it is delivered again and keeps
the category once (nothing written the second time); a mail deleted while the CRM stores it is skipped
without an error; a read-only mailbox turns feedback off and says so."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from foldertrack.delivery.feedback import MailboxFeedback, feedback_rows
from foldertrack.delivery.service import DeliveryOptions
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.model import Activity
from foldertrack.retry import Backoff
from foldertrack.simulator import MailSpec
from foldertrack.sources.base import ItemGone, MailSource
from foldertrack.sources.ews import EwsSource
from foldertrack.testing.graph_watch import graph_options, graph_source
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, Harness, options_for_tests
from foldertrack.testing.recording_sink import RecordingSink
from foldertrack.watch.daemon import Watcher, WatchOptions
from tests.delivery.test_feedback import ALICE, CONTOSO, FABRIKAM, RECORDS, RULES

TRACKED = "Tracked to CRM"
FAST = DeliveryOptions(workers=2, initial_backoff=0.05, max_backoff=0.5, scan_interval=0.2)


class DeletingCrm(RecordingSink):
    """The test CRM; while it stores a mail whose subject is in ``doomed``, the owner deletes that mail for
    good, so the confirmation (and the feedback after it) comes for a mail that no longer exists."""

    def __init__(self, path: Any, mailbox: Any) -> None:
        super().__init__(path)
        self.mailbox = mailbox
        self.doomed: set[str] = set()
        self.deleted: list[str] = []  # item ids

    def upsert(self, activity: Activity, conn: Any = None) -> Any:
        outcome = super().upsert(activity, conn)
        if activity.subject in self.doomed:
            self.doomed.discard(activity.subject)
            for item in self.mailbox.items(activity.folder_path):
                if item.subject == activity.subject:
                    self.mailbox.delete_item(item.id, hard=True)
                    self.deleted.append(item.id)
        return outcome


@dataclass
class World:
    h: Harness
    mailbox: Any
    crm: DeletingCrm
    feedback: MailboxFeedback
    source: MailSource
    writes: list[bool]  # what each set_categories call answered (True: written)

    def file(self, subject: str, folder: str = CONTOSO) -> str:
        mail = MailSpec(subject=subject, sender="dana@contoso.com", to=[ALICE], body=f"body of {subject}")
        return self.mailbox.move_item(self.mailbox.deliver(mail), folder)

    def categories(self, folder: str) -> list[tuple[str, ...]]:
        return [item.categories for item in self.mailbox.items(folder)]

    def feedback_row(self) -> Any:
        with self.h.engine.connect() as conn:
            return {r.mailbox: r for r in feedback_rows(conn)}.get(ALICE)


def mail_source(h: Harness, kind: str) -> tuple[ExchangeConnector | None, MailSource]:
    """The watcher's connector (EWS only) and source, as ``foldertrack.runtime.build_watcher`` makes them."""
    if kind == "graph":
        return None, graph_source(h.sim, engine=h.engine)
    settings = ExchangeSettings(
        endpoint=h.sim.url,
        auth="basic",
        username=SERVICE_ACCOUNT,
        password=SERVICE_PASSWORD,
        access="impersonation",
        version="Exchange2016",
    )
    connector = ExchangeConnector(settings, max_connections=8)
    return connector, EwsSource(connector)


@pytest.fixture(params=["ews", "graph"])
def world(request, tmp_path, monkeypatch) -> Iterator[World]:
    """Alice's Contoso and Fabrikam folders tracked; delivery to the test CRM, with feedback written
    through the very source the watcher reads with."""
    kind = request.param
    options = options_for_tests()
    if kind == "graph":
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # requests would let it override verify=
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        options = graph_options(options)
    with Harness(tmp_path, **options) as h:
        h.import_records(RECORDS)
        mailbox = h.add_mailbox(ALICE)
        for path in (CONTOSO, FABRIKAM):
            mailbox.create_folder(path)
        h.write_rules(RULES)
        crm = DeletingCrm(tmp_path / "crm.db", mailbox)
        connector, source = mail_source(h, kind)
        writes: list[bool] = []
        write = source.set_categories

        def recorded(*args: Any) -> bool:
            writes.append(write(*args))
            return writes[-1]

        source.set_categories = recorded  # type: ignore[method-assign]
        feedback = MailboxFeedback(source, h.engine, backoff=Backoff(initial=0.01, maximum=0.05))
        watch = WatchOptions(rules_dir=h.rules_dir, **{**h.options, "delivery": FAST})
        h.watcher = Watcher(
            watch,
            h.engine,
            connector,  # type: ignore[arg-type]  # None on Graph: every call goes through the source
            crm,
            feedback=feedback,
            source=source,
        )
        h.watcher.start()
        assert h.watcher.ready.wait(20), "watcher did not become ready"
        yield World(h, mailbox, crm, feedback, source, writes)  # stopping the watcher closes all of it


def test_tracked_delivered_marked_moved_kept_once_deleted_skipped(world: World):
    h, feedback = world.h, world.feedback
    world.file("Quote")
    h.wait_for(lambda: feedback.counts["confirmed"] == 1, what="the delivered mail's confirmation")
    assert world.categories(CONTOSO) == [(TRACKED,)]
    assert world.crm.crm()["Quote"]["regarding"] == "account:acc-contoso"
    assert world.writes == [True]

    # moved to another tracked folder: delivered again (new regarding), the category is there once
    [item] = world.mailbox.items(CONTOSO)
    world.mailbox.move_item(item.id, FABRIKAM)
    h.wait_for(lambda: feedback.counts["confirmed"] == 2, what="the moved mail's confirmation")
    assert world.crm.crm()["Quote"]["regarding"] == "account:acc-fabrikam"
    assert world.categories(FABRIKAM) == [(TRACKED,)] and world.categories(CONTOSO) == []
    # read, already there: nothing written (the ledger may still hold the old copy's row for a moment on
    # EWS, whose move gives a new id: that row's id is gone, looked up again, and found marked too)
    assert world.writes[0] is True and len(world.writes) > 1 and not any(world.writes[1:])

    # deleted while the CRM stores it: the confirmation finds no mail, skipped without an error
    world.crm.doomed.add("Gone")
    world.file("Gone")
    h.wait_for(lambda: feedback.counts["missing"] == 1, what="feedback to skip the deleted mail")
    assert feedback.wait_idle()
    assert "Gone" in world.crm.crm() and world.categories(CONTOSO) == []
    assert feedback.counts["confirmed"] == 2 and not feedback.counts["errors"]
    assert feedback.unavailable() == {}
    [gone] = world.crm.deleted
    with pytest.raises(ItemGone):  # what the source says of it, EWS or Graph alike
        world.source.set_categories(ALICE, gone, TRACKED, None)
    h.settle()
    row = world.feedback_row()
    assert row.available and row.confirmed == 2 and row.errors == 0


def test_read_only_mailbox_turns_feedback_off_on_either_source(world: World):
    h, feedback = world.h, world.feedback
    h.sim.store.read_only.add(ALICE)  # the service account may read Alice's mails, not change them
    world.file("Quote")
    row = h.wait_for(
        lambda: (r := world.feedback_row()) is not None and not r.available and r,
        what="feedback to turn itself off for the mailbox, in the database for `status`",
    )
    assert row.reason.startswith("ErrorAccessDenied")
    assert feedback.unavailable()[ALICE].startswith("ErrorAccessDenied")
    assert world.categories(CONTOSO) == [()]

    world.file("Second")  # off now: skipped without asking the source
    h.wait_for(lambda: feedback.counts["skipped"] == 1, what="the next mark to be skipped")
    assert len(world.writes) == 0 and feedback.counts["errors"] == 1
