"""Issue 10 item 1: one mail whose GetItem keeps failing outright must not block its folder.

The simulator spoils every GetItem answer that contains the poison mail (a SOAP ErrorInternalServerError,
a plain HTTP 500, or a body that is not XML); a batch with it fails as a whole, a request without it works.
"""

from __future__ import annotations

import pytest
import requests

from foldertrack.ops.status import collect_status
from foldertrack.state.schema import dead_letters
from tests.hardening.conftest import ALICE, FABRIKAM, file, mail, rows


def _mailbox_status(h):
    return next(m for m in collect_status(h.engine)["mailboxes"] if m["mailbox"] == ALICE)


@pytest.mark.parametrize("mode", ["soap_error", "http_500", "garbage"])
def test_a_poison_item_is_dead_lettered_and_its_folder_moves_on(watching, mode):
    h = watching
    control = h.sim.url.rsplit("/EWS/", 1)[0] + "/control/faults"  # as a chaos script would do it
    answer = requests.post(
        control, json={"action": "spoil_responses", "marker": "POISON", "mode": mode}, timeout=5
    )
    assert answer.status_code == 200 and answer.json()["spoiled_responses"][0]["mode"] == mode
    file(h, mail("POISON pill"))
    for n in range(3):
        file(h, mail(f"filed after the poison {n}"))
    for n in range(3):
        h.wait_tracked(f"filed after the poison {n}", regarding_id="acc-contoso")
    h.wait_for(lambda: _mailbox_status(h)["retrying"] == 1 or _mailbox_status(h)["dead_letters"] == 1)
    dead = h.wait_for(lambda: rows(h, dead_letters, status="dead"), 20, "the poison mail dead-lettered")
    assert len(dead) == 1 and dead[0]["attempts"] == 3
    assert "GetItem of this item alone fails" in dead[0]["error"]
    assert h.activity("POISON pill") is None
    status = _mailbox_status(h)
    assert (status["dead_letters"], status["retrying"]) == (1, 0)
    file(h, mail("after the dead letter"), FABRIKAM)  # the folder and the mailbox keep working
    h.wait_tracked("after the dead letter", regarding_id="acc-fabrikam")


def test_a_server_failing_every_getitem_counts_against_no_item(watching):
    """When GetItem fails for everything, it is the server, not the mails: nothing is dead-lettered, and the
    mails are tracked once the server answers again."""
    h = watching
    file(h, mail("known good"))
    h.wait_tracked("known good")
    h.sim.faults.responses.add("<m:GetItemResponse", "soap_error")
    for n in range(2):
        file(h, mail(f"during the outage {n}"))
    h.wait_for(
        lambda: h.sim.faults.responses.spoiled.get("soap_error", 0) >= 5, 20, "several failed GetItems"
    )
    assert rows(h, dead_letters) == []
    h.sim.faults.responses.clear()
    for n in range(2):
        h.wait_tracked(f"during the outage {n}", timeout=30)
    assert rows(h, dead_letters) == []
