"""Issue 10 item 5: a huge, truncated or broken answer is an error, never data; stored fields are capped.

The simulator serves the real answer with a mail's subject blown up (``oversize``), or only the first half
of the answer (``truncated``). exchangelib parses with lxml's recovering parser, which would turn half an
answer into half an item: the transport refuses it first.
"""

from __future__ import annotations

import pytest

from foldertrack.exchange import transport
from foldertrack.exchange.bounds import MAX_SUBJECT_CHARS
from foldertrack.state.schema import dead_letters
from tests.hardening.conftest import file, mail, rows


@pytest.fixture
def small_cap(watching):
    transport.set_limits(transport.LIMITS.deadline, 1_000_000)  # exchange.max_response_size = 1 MB
    yield watching
    transport.set_limits(transport.Limits().deadline, transport.Limits().max_bytes)


def test_an_answer_over_the_size_cap_is_an_error_not_data(small_cap):
    h = small_cap
    h.sim.faults.responses.add("HUGE", "oversize", size=3_000_000)
    file(h, mail("HUGE answer"))
    file(h, mail("normal mail"))
    h.wait_tracked("normal mail")
    dead = h.wait_for(lambda: rows(h, dead_letters, status="dead"), 20, "the huge one dead-lettered")
    assert "max_response_size" in dead[0]["error"]
    assert all(len(a["subject"] or "") < 1000 for a in h.activities())


def test_a_truncated_answer_is_an_error_not_a_junk_activity(watching):
    h = watching
    h.sim.faults.responses.add("HALF", "truncated", times=1)
    file(h, mail("HALF an answer", body="the whole body, which must arrive whole"))
    activity = h.wait_tracked("HALF an answer", timeout=20)  # the retry gets the whole answer
    assert activity["text_body"].startswith("the whole body, which must arrive whole")
    assert h.sim.faults.responses.spoiled["truncated"] == 1
    assert len(h.activities()) == 1


def test_stored_fields_are_capped_with_a_note(watching, caplog):
    h = watching
    h.sim.faults.responses.add("LONG", "oversize", size=50_000)  # a 50,000-character subject
    file(h, mail("LONG subject"))
    activity = h.wait_for(lambda: next((a for a in h.activities() if a["subject"].startswith("LONG")), None))
    assert len(activity["subject"]) == MAX_SUBJECT_CHARS
    assert activity["subject"].endswith("[… truncated by foldertrack: 50,012 characters]")
    assert "subject too long; stored cut, with a note" in caplog.text
