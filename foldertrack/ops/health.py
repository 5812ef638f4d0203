"""Is this watcher alive, ready, healthy? The answers of ``/livez``, ``/readyz`` and ``/healthz``.

- **Alive** (``/livez``): every thread runs (``Watcher.check()``). Restart it when not: the systemd watchdog
  and a Kubernetes liveness probe.
- **Ready** (``/readyz``): rules and database loaded and every mailbox attempted: subscribed, polling, or in
  ``error`` (wrong address, Exchange unreachable past ``watch.start_timeout``). It may have errors.
- **Healthy** (``/healthz``): working. Not healthy while starting, when a mailbox is in ``error`` (with its
  reason), when delivery to an external sink has failed for longer than ``delivery.unhealthy_after``, or
  when the last rules reload was refused or found no rule files ("degraded": the previous rules run on).
  A mailbox that polls because its stream fails is working (tracked within the poll interval).

Each answer is one short line naming the mailboxes (or sink, or rules file) and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foldertrack.watch.daemon import Watcher
    from foldertrack.watch.mailbox import MailboxState

MAX_NAMED = 3  # mailboxes named in a reason; the rest are counted
MAX_ERROR = 160  # characters of each mailbox's last error in a reason


def liveness_problem(watcher: Watcher) -> str | None:
    """None while every thread is alive, else which one died."""
    return watcher.check()


def readiness_problem(watcher: Watcher) -> str | None:
    """None once started (every mailbox attempted; some may be in error), else what it waits for."""
    problem = watcher.check()
    if problem:
        return problem
    if not watcher.ready.is_set():
        states = watcher.mailbox_states()
        waiting = [s for s in states if not started(s)]
        return f"starting: {_describe(waiting, len(states))} not subscribed or polling yet"
    return None


def health_problem(watcher: Watcher) -> str | None:
    """None when healthy, else one line saying why not (``degraded: …`` while still partly working)."""
    problem = readiness_problem(watcher)
    if problem:
        return problem
    states = watcher.mailbox_states()
    failed = [s for s in states if s.health()["mode"] == "error"]
    if states and len(failed) == len(states):
        return f"every mailbox is in error: {_describe(failed, len(states))}"
    rules = getattr(watcher, "rules_state", None)
    rules_problem = rules.problem if rules is not None else None
    delivery = getattr(watcher, "delivery", None)
    delivery_problem = delivery.problem() if delivery is not None else None
    if delivery_problem:
        return delivery_problem
    if failed:
        return f"degraded: {_describe(failed, len(states))} in error"
    if rules_problem is not None:
        return f"degraded: {rules_problem.message}"
    return None


def started(state: MailboxState) -> bool:
    """Subscribed, polling, or nothing to subscribe to (its folders resolved)."""
    return state.resolved and (
        state.subscription_id is not None
        or state.mode == "polling"
        or not state.watch_ids
        or (state.mode == "streaming" and bool(state.subscribed_ids))  # Graph change notifications
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
