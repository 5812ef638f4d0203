"""The validated rule set: frozen values the watcher can share between threads and diff on reload.

Equality ignores where a rule was written (``source``, ``line``), so editing a comment in a rule file
yields an equal :class:`RuleSet` and the same ``fingerprint``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Literal, get_args

from foldertrack.model import RecordRef
from foldertrack.rules.paths import fold, join_folder_path, parse_folder_path

OnLeave = Literal["keep", "untrack", "delete"]
Duplicates = Literal["first_wins", "last_wins"]
LookupBy = Literal["name", "number", "name_or_number"]

ON_LEAVE: tuple[str, ...] = get_args(OnLeave)
DUPLICATES: tuple[str, ...] = get_args(Duplicates)
LOOKUP_BY: tuple[str, ...] = get_args(LookupBy)


@dataclass(frozen=True)
class SendOptions:
    """What of a mail goes to an external sink (``send: {body: false, attachments: false}`` for
    privacy-sensitive folders). The local activity tables always keep everything."""

    body: bool = True
    attachments: bool = True

    def as_dict(self) -> dict[str, bool]:
        return {"body": self.body, "attachments": self.attachments}


@dataclass(frozen=True)
class RecordLookup:
    """A record found in the record directory at sync time, by name or number (it may be imported later).

    ``type`` None means any record type. ``value`` None means a pattern rule: each subfolder's name is the
    value (see :meth:`with_value`).
    """

    type: str | None
    by: LookupBy
    value: str | None = None

    def with_value(self, value: str) -> RecordLookup:
        return replace(self, value=value)

    def __str__(self) -> str:
        what = self.by.replace("_", " ")
        kind = self.type or "any record"
        if self.value is None:
            return f"{kind} by {what} of each subfolder"
        return f"{kind} with {what} {self.value!r}"


Record = RecordRef | RecordLookup | None


@dataclass(frozen=True)
class FolderRule:
    """One mailbox folder (or, for a pattern rule, each subfolder of one) mapped to a record and a policy."""

    mailbox: str  # lower-cased SMTP address
    path: str  # normalised: "Inbox/Customers/Contoso", pattern rules end with "/*"
    record: Record
    include_subfolders: bool = False
    backfill: bool = True
    backfill_since: timedelta | None = None
    on_leave: OnLeave = "keep"
    duplicates: Duplicates = "first_wins"
    send: SendOptions = SendOptions()
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def is_pattern(self) -> bool:
        return parse_folder_path(self.path)[1]

    @property
    def segments(self) -> tuple[str, ...]:
        """The folder names (unescaped); for a pattern rule, the parent folder whose subfolders match."""
        return parse_folder_path(self.path)[0]

    @property
    def key(self) -> tuple[str, str]:
        """(mailbox, case-folded path): two rules with the same key are about the same folder(s)."""
        return self.mailbox, join_folder_path(fold(self.segments), self.is_pattern)

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"

    def options(self) -> dict[str, object]:
        """The policy part, for display and for telling duplicate rules apart."""
        return {
            "include_subfolders": self.include_subfolders,
            "backfill": self.backfill,
            "backfill_since": self.backfill_since,
            "on_leave": self.on_leave,
            "duplicates": self.duplicates,
            "send": self.send.as_dict(),
        }

    def canonical(self) -> tuple[object, ...]:
        """Everything that matters for tracking, as plain values (for fingerprints)."""
        record: object
        if isinstance(self.record, RecordRef):
            record = ("ref", self.record.type, self.record.id)
        elif isinstance(self.record, RecordLookup):
            record = ("lookup", self.record.type, self.record.by, self.record.value)
        else:
            record = None
        since = self.backfill_since.total_seconds() if self.backfill_since is not None else None
        return (self.mailbox, self.path, record, self.include_subfolders, self.backfill, since, self.on_leave,
                self.duplicates, self.send.body, self.send.attachments)  # fmt: skip


@dataclass(frozen=True)
class RuleMatch:
    """The rule that applies to one concrete folder, and the record it maps that folder to."""

    rule: FolderRule
    record: Record


@dataclass(frozen=True)
class RuleSet:
    """All rules, sorted by (mailbox, path); ``files`` lists the files they came from (display only)."""

    rules: tuple[FolderRule, ...] = ()
    files: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(sorted(self.rules, key=lambda r: (r.key, r.path))))

    def mailboxes(self) -> tuple[str, ...]:
        return tuple(sorted({rule.mailbox for rule in self.rules}))

    def for_mailbox(self, address: str) -> tuple[FolderRule, ...]:
        address = address.strip().lower()
        return tuple(rule for rule in self.rules if rule.mailbox == address)

    @property
    def fingerprint(self) -> str:
        """Stable hash of the tracking-relevant content: equal sets have equal fingerprints."""
        text = repr(tuple(rule.canonical() for rule in self.rules))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def match(self, mailbox: str, folder: str | Sequence[str]) -> RuleMatch | None:
        """The rule for a concrete folder (a path string or its segments): the most specific wins.

        An exact path beats a pattern at the same depth, and a deeper rule beats a shallower one whose
        ``include_subfolders`` reaches down. A pattern rule's lookup takes the subfolder's name as value.
        """
        segments = parse_folder_path(folder)[0] if isinstance(folder, str) else tuple(folder)
        target = fold(segments)
        best: tuple[tuple[int, bool], RuleMatch] | None = None
        for rule in self.for_mailbox(mailbox):
            base = fold(rule.segments)
            depth = len(base) + (1 if rule.is_pattern else 0)
            if target[: len(base)] != base or len(target) < depth:
                continue
            if len(target) > depth and not rule.include_subfolders:
                continue
            record = rule.record
            if rule.is_pattern and isinstance(record, RecordLookup):
                record = record.with_value(segments[len(base)])
            rank = (depth, not rule.is_pattern)
            if best is None or rank > best[0]:
                best = (rank, RuleMatch(rule, record))
        return best[1] if best else None
