"""The only objects that cross threads: plain frozen events, like watchdog's.

Producers (stream readers, the poll timer, the rules watcher) only put these on the dispatcher; the
dispatcher turns them into work for the sync workers. A notification is only a trigger: what changed is
always read back with SyncFolderItems, so a lost, repeated or reordered event cannot lose or double a mail.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FolderChanged:
    """Something happened in (or to) a tracked folder: catch it up."""

    mailbox: str
    folder_id: str
    #: "event", "notification" (Graph), "poll", "safety-net", "resubscribed", "stream-lost", "stream-gap" (the
    #: next request after a lost stream is open), "stream-reissued" (after we re-issued it), "retry"…;
    #: which are background work: ``watch.dispatcher.BACKGROUND_REASONS``
    reason: str


@dataclass(frozen=True)
class HierarchyChanged:
    """A folder was created, renamed, moved or deleted somewhere we care about: re-resolve the mailbox's rules."""

    mailbox: str
    reason: str


@dataclass(frozen=True)
class SubscribeMailbox:
    """(Re)create the mailbox's streaming subscription; never reuses an old watermark."""

    mailbox: str
    reason: str
