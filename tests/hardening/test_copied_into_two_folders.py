"""Issue 10 item 7: a mail copied into two tracked folders while the watcher is behind.

The rule (README, Tracking semantics): of two copies of one mail in tracked folders of one mailbox, the
copy that arrived last by the server's clock decides the regarding, whichever folder is caught up first.
Two mails copied in opposite orders are caught up in the same run (so in the same folder order): with
"last caught up wins", one of them would end up on the wrong record.
"""

from __future__ import annotations

from datetime import UTC, datetime

from foldertrack.testing.harness import wait_until
from tests.hardening.conftest import ALICE, CONTOSO, FABRIKAM, mail


def _next_second() -> None:
    """Exchange stamps times in whole seconds: let the server's clock tick before the second copy."""
    start = datetime.now(UTC).replace(microsecond=0)
    wait_until(lambda: datetime.now(UTC).replace(microsecond=0) > start, 2, "the clock to tick")


def test_the_copy_that_arrived_last_decides_whatever_the_catch_up_order(harness):
    h = harness
    h.start_watcher()
    h.stop_watcher()  # behind: the copies happen while nothing watches
    box = h.sim.mailbox(ALICE)
    first = h.sim.deliver(ALICE, mail("to Fabrikam then Contoso"), folder="Inbox")
    second = h.sim.deliver(ALICE, mail("to Contoso then Fabrikam"), folder="Inbox")
    box.copy_item(first, FABRIKAM)
    box.copy_item(second, CONTOSO)
    _next_second()
    box.copy_item(first, CONTOSO)
    box.copy_item(second, FABRIKAM)
    h.start_watcher()
    h.wait_tracked("to Fabrikam then Contoso", regarding_id="acc-contoso")
    h.wait_tracked("to Contoso then Fabrikam", regarding_id="acc-fabrikam")
    h.settle()
    assert {a["subject"]: a["regarding_id"] for a in h.activities()} == {
        "to Fabrikam then Contoso": "acc-contoso",
        "to Contoso then Fabrikam": "acc-fabrikam",
    }


def test_a_move_within_the_same_second_still_relinks_whatever_the_order(harness):
    """A move, unlike a copy, leaves no copy behind: the new folder wins even when both times are equal
    (whole seconds), because the old copy is gone from Exchange."""
    h = harness
    h.start_watcher()
    file_a = h.sim.deliver(ALICE, mail("Contoso then Fabrikam"), folder="Inbox")
    file_b = h.sim.deliver(ALICE, mail("Fabrikam then Contoso"), folder="Inbox")
    box = h.sim.mailbox(ALICE)
    a, b = box.move_item(file_a, CONTOSO), box.move_item(file_b, FABRIKAM)
    h.wait_tracked("Contoso then Fabrikam", regarding_id="acc-contoso")
    h.wait_tracked("Fabrikam then Contoso", regarding_id="acc-fabrikam")
    h.stop_watcher()
    box.move_item(a, FABRIKAM)
    box.move_item(b, CONTOSO)
    h.start_watcher()
    h.wait_tracked("Contoso then Fabrikam", regarding_id="acc-fabrikam")
    h.wait_tracked("Fabrikam then Contoso", regarding_id="acc-contoso")
    h.settle()
    assert len(h.activities()) == 2
