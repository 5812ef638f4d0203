"""Issue 10 item 3: a different mail carrying a tracked mail's Message-ID never rewrites its activity.

Message-IDs are visible in every reply's headers, so anyone can send a mail that reuses one. The first
content is kept, the collision is recorded (status, log, metric); the same mail from a second mailbox (the
true duplicate) keeps sharing the one activity.
"""

from __future__ import annotations

from datetime import UTC, datetime

from foldertrack.cli.status_cmd import render_text
from foldertrack.explain import find_stories
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.ops.status import collect_status
from foldertrack.state.schema import key_collisions, ledger
from foldertrack.testing.harness import options_for_tests
from tests.hardening.conftest import ALICE, BOB, FABRIKAM, Harness, file, mail, prepare, rows

SHARED_ID = "<quarterly-figures@contoso.com>"


def test_a_reused_message_id_keeps_the_first_content_and_is_flagged(tmp_path, caplog):
    with Harness(tmp_path, **options_for_tests()) as h:
        prepare(h, (ALICE, BOB))
        observer = PrometheusObserver()
        h.start_watcher(observer=observer)
        original = mail("Quarterly figures", message_id=SHARED_ID, to=[ALICE, BOB], body="the real numbers")
        file(h, original)
        first = h.wait_tracked("Quarterly figures", regarding_id="acc-contoso")
        parties = h.parties(first["key"])

        forged = mail(
            "Please pay this invoice",
            message_id=SHARED_ID,
            sender="mallory@evil.example",
            to=[ALICE],
            body="send the money to mallory",
        )
        file(h, forged, FABRIKAM)
        h.wait_for(lambda: rows(h, key_collisions), 15, "the collision recorded")
        h.settle()
        (activity,) = h.activities()
        assert activity["subject"] == "Quarterly figures" and activity["text_body"].startswith("the real")
        assert activity["regarding_id"] == "acc-contoso"  # not re-linked by the forged mail either
        assert h.parties(first["key"]) == parties
        (collision,) = collect_status(h.engine)["collisions"]
        assert collision["mailbox"] == ALICE and collision["sender"] == "mallory@evil.example"
        assert collision["subject"] == "Please pay this invoice"
        assert collect_status(h.engine)["totals"]["collisions"] == 1
        text = "\n".join(render_text(collect_status(h.engine), datetime.now(UTC)))
        assert "Message-ID collisions" in text and "Please pay this invoice from mallory@evil.example" in text
        assert "Message-ID collision" in caplog.text
        sample = observer.registry.get_sample_value("foldertrack_items_total", {"outcome": "collision"})
        assert sample == 1.0
        (story,) = find_stories(h.engine, message_id=SHARED_ID)
        assert story.collisions[0]["sender"] == "mallory@evil.example"
        assert "reused its Message-ID with different content" in story.verdict

        file(h, original, FABRIKAM, mailbox=BOB)  # the same mail, Bob's copy: no collision, one activity
        h.wait_for(lambda: len(rows(h, ledger)) == 2, 10, "Bob's copy in the ledger")
        h.settle()
        assert len(h.activities()) == 1 and len(rows(h, key_collisions)) == 1
