"""Per-mailbox watch state, owned by the daemon and changed only under its lock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from foldertrack.exchange.hierarchy import FolderTree
from foldertrack.targets import RuleIssue, Target


@dataclass
class MailboxState:
    mailbox: str
    rules: tuple = ()
    tree: FolderTree | None = None
    targets: dict[str, Target] = field(default_factory=dict)  # folder id → target
    issues: list[RuleIssue] = field(default_factory=list)
    watch_ids: frozenset[str] = frozenset()  # folders the subscription covers (targets + pattern parents)
    subscription_id: str | None = None
    subscribed_ids: frozenset[str] = frozenset()
    group: int | None = None
    mode: str = "starting"  # starting | streaming | polling | error | stopped
    subscribe_failures: int = 0
    next_poll: float = 0.0
    next_safety: float = 0.0
    resolved: bool = False
    resolved_for: tuple | None = None  # (tree revision, rules) the current targets were resolved from
    last_error: str | None = None
    last_event_at: datetime | None = None  # set by the stream reader, written to the database by the timer
    start_failed: bool = False  # its start-up (folders, subscription) failed once: readiness goes on
    failing: bool = False  # a permanent error since the last success: status shows mode "error"
    health_written: tuple | None = None  # what the timer last wrote to subscription_health
    stuck: str | None = None  # set by the supervisor while the mailbox's work makes no progress (H5)
    tree_read_at: float = 0.0  # monotonic time of the last folder-tree read (coalesces folder ModifiedEvents)

    def health(self) -> dict:
        """The subscription_health values this state stands for (the timer writes them when they change)."""
        return {
            "mode": "error" if (self.failing and self.mode != "streaming") or self.stuck else self.mode,
            "last_error": self.stuck or self.last_error,
            "last_event_at": self.last_event_at,
        }
