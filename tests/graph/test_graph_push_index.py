"""The push side's subscriptions are indexed by mailbox: the timer asks each mailbox whether one of its
subscriptions is due, which must not walk every subscription of the process (50,000 at 10,000 mailboxes).
The index must equal a walk after any sequence of adds, replacements and removals."""

from __future__ import annotations

import datetime as dt
import random

from foldertrack.sources.graph.push import StoredSubscription, _Subscriptions


def _sub(sub_id: str, mailbox: str) -> StoredSubscription:
    return StoredSubscription(sub_id, mailbox, f"folder-{sub_id}", "r", dt.datetime.now(dt.UTC), "0" * 64)


def test_the_mailbox_index_equals_a_walk_after_random_changes():
    rng = random.Random(7)
    subs = _Subscriptions()
    mailboxes = [f"user{n}@example.com" for n in range(5)]
    for step in range(2000):
        sub_id = f"s{rng.randrange(40)}"
        action = rng.random()
        if action < 0.5:
            subs[sub_id] = _sub(sub_id, rng.choice(mailboxes))  # new, or replaced (maybe another mailbox)
        elif action < 0.75 and sub_id in subs:
            del subs[sub_id]
        elif action < 0.98:
            subs.pop(sub_id, None)
        else:
            subs.clear()
        for mailbox in mailboxes:
            walked = sorted(s.id for s in subs.values() if s.mailbox == mailbox)
            assert sorted(s.id for s in subs.of(mailbox)) == walked, step
    assert subs.pop("missing") is None
