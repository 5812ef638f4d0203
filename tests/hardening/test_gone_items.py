"""Issue 10 item 6: a mail moved away between the sync reading it and its attachment being fetched must
not leave a "retrying" row behind forever (status would show it for good, retry and restarts would not
clear it)."""

from __future__ import annotations

from foldertrack.ops.status import collect_status
from foldertrack.state import dead_letters_store
from foldertrack.state import watch_store as store
from foldertrack.state.schema import dead_letters
from tests.hardening.conftest import ALICE, FABRIKAM, file, mail, rows


def test_a_mail_moved_away_while_its_attachment_is_read_is_not_retrying(watching):
    h = watching
    moved: list[str] = []

    def move_it_away(response) -> None:
        """Right after the GetItem answer naming the mail, the user moves it out (once)."""
        from lxml import etree

        text = etree.tostring(response)
        if not moved and b"GetItemResponse" in text and b"Contract with attachment" in text:
            (item,) = [i.id for i in h.sim.mailbox(ALICE).items("Inbox/Customers/Contoso")]
            moved.append(h.sim.mailbox(ALICE).move_item(item, "Inbox/Elsewhere"))

    h.sim.add_observer(move_it_away)
    try:
        file(
            h,
            mail("Contract with attachment", attachments=[("contract.pdf", "application/pdf", b"%PDF" * 50)]),
        )
        h.wait_for(lambda: moved, 10, "the mail moved away mid-sync")
        file(h, mail("sentinel"), FABRIKAM)
        h.wait_tracked("sentinel")
        h.settle()
    finally:
        h.sim.remove_observer(move_it_away)
    assert h.activity("Contract with attachment") is None
    assert rows(h, dead_letters) == []
    status = next(m for m in collect_status(h.engine)["mailboxes"] if m["mailbox"] == ALICE)
    assert status["retrying"] == 0 and status["dead_letters"] == 0


def test_a_stale_retrying_row_is_cleared_by_the_next_sync(watching):
    """Rows such a mail left before this fix (or any retrying item that no longer exists) are cleared."""
    h = watching
    file(h, mail("first"))
    h.wait_tracked("first")
    folder_id = next(iter(h.watcher.mailbox_states()[0].targets))
    gone_id = h.sim.deliver(ALICE, mail("left behind"), folder="Inbox")
    h.sim.mailbox(ALICE).move_item(gone_id, "Inbox/Elsewhere")  # a move gives a new id: the old one is gone
    with store.writing(h.engine) as conn:
        dead_letters_store.record_failure(
            conn, ALICE, folder_id, gone_id, "ErrorItemNotFound: moved", max_attempts=3
        )
    file(h, mail("next one"))
    h.wait_tracked("next one")
    h.wait_for(lambda: rows(h, dead_letters) == [], 10, "the stale retrying row cleared")
