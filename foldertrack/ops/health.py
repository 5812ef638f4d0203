"""Is this watcher healthy? The answer ``/healthz`` gives (200 "ok", or 503 with the reason).

Healthy means: every thread alive (``Watcher.check()``), started up (every mailbox subscribed or
polling), at least one mailbox not in ``error``, and delivery to an external sink not failing for longer
than ``delivery.unhealthy_after`` (a CRM outage shorter than that only grows the outbox). A mailbox that polls because its stream fails is
degraded, not unhealthy: mails are still tracked within the poll interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foldertrack.watch.daemon import Watcher
    from foldertrack.watch.mailbox import MailboxState

MAX_NAMED = 3  # mailboxes named in a reason; the rest are counted
MAX_ERROR = 160  # characters of each mailbox's last error in a reason


def health_problem(watcher: Watcher) -> str | None:
    """None when healthy, else one line saying why not."""
    problem = watcher.check()
    if problem:
        return problem
    states = watcher.mailbox_states()
    if not watcher.ready.is_set():
        waiting = [s for s in states if not _started(s)]
        return f"starting: {_describe(waiting, len(states))} not subscribed or polling yet"
    if states and all(s.health()["mode"] == "error" for s in states):
        return f"every mailbox is in error: {_describe(states, len(states))}"
    delivery = getattr(watcher, "delivery", None)
    if delivery is not None:
        return delivery.problem()
    return None


def _started(state: MailboxState) -> bool:
    return state.resolved and (
        state.subscription_id is not None or state.mode == "polling" or not state.watch_ids
    )


def _describe(states: list[MailboxState], total: int) -> str:
    named = [
        s.mailbox + (f" ({_one_line(s.last_error)})" if s.last_error else "") for s in states[:MAX_NAMED]
    ]
    more = f" and {len(states) - MAX_NAMED} more" if len(states) > MAX_NAMED else ""
    return f"{len(states)} of {total} mailbox(es)" + (": " + "; ".join(named) + more if named else "")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"
