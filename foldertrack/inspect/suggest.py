"""``rules suggest MAILBOX``: a starting rules file from the folder tree and the record directory.

Each mail folder whose name equals a record's name or number (case-insensitively, one record only)
becomes a rule; close or ambiguous matches become commented-out rules that say why, so an admin edits
instead of writing from nothing. A parent whose subfolders all match gets a pattern rule as a comment.
The text is a valid rule file whenever it has at least one rule (``rules check`` accepts it).
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from dataclasses import dataclass

from foldertrack.inspect.exchange import Mailbox
from foldertrack.model import RecordRef
from foldertrack.state.records import DirectoryEntry, fold

#: top-level folders that are Exchange's own, not an admin's filing structure
SYSTEM_FOLDERS = frozenset(
    name.casefold()
    for name in (
        "Deleted Items",
        "Junk Email",
        "Outbox",
        "Drafts",
        "Sent Items",
        "Conversation History",
        "Sync Issues",
        "Archive",
        "RSS Feeds",
        "Notes",
    )
)


@dataclass(frozen=True)
class Suggestion:
    """One folder and what matched it: ``exact`` (one record), ``ambiguous`` or ``close``."""

    path: str
    kind: str
    records: tuple[RecordRef, ...]
    matched: str  # the record name or number that matched


def suggestions(mailbox: Mailbox, entries: list[DirectoryEntry], cutoff: float = 0.8) -> list[Suggestion]:
    """Folder → record suggestions for every user mail folder, in path order."""
    by_key: dict[str, list[tuple[RecordRef, str]]] = defaultdict(list)
    for entry in entries:
        by_key[fold(entry.ref.name or "")].append((entry.ref, entry.ref.name or ""))
        if entry.number:
            by_key[fold(entry.number)].append((entry.ref, entry.number))
    names = [k for k in by_key if k]
    out = []
    for folder in mailbox.folders:
        if not folder.is_mail or folder.path.split("/", 1)[0].casefold() in SYSTEM_FOLDERS:
            continue
        key = fold(folder.name)
        exact = _unique(by_key.get(key, []))
        if len(exact) == 1:
            out.append(Suggestion(folder.path, "exact", (exact[0][0],), exact[0][1]))
        elif exact:
            out.append(Suggestion(folder.path, "ambiguous", tuple(r for r, _ in exact), exact[0][1]))
        else:
            close = difflib.get_close_matches(key, names, n=1, cutoff=cutoff)
            if close:
                found = _unique(by_key[close[0]])
                out.append(Suggestion(folder.path, "close", tuple(r for r, _ in found), found[0][1]))
    return out


def _unique(pairs: list[tuple[RecordRef, str]]) -> list[tuple[RecordRef, str]]:
    seen: dict[tuple[str, str], tuple[RecordRef, str]] = {}
    for ref, text in pairs:
        seen.setdefault((ref.type, ref.id), (ref, text))
    return list(seen.values())


def render_rules(mailbox: Mailbox, found: list[Suggestion]) -> str:
    """The suggestions as a rule file (YAML) with comments; valid when at least one match is exact."""
    lines = [
        f"# Suggested by `foldertrack rules suggest {mailbox.address}`: review it, then save it in rules.dir.",
        "# Exact matches (folder name = record name or number) are rules; close or ambiguous ones are",
        "# commented out: uncomment the right line, or delete it.",
        "mailboxes:",
        f"  - address: {mailbox.address}",
        "    folders:",
    ]
    exact = [s for s in found if s.kind == "exact"]
    if not exact:
        lines.insert(0, "# No folder name matched a record exactly: uncomment a line below to start.")
    for s in found:
        if s.kind == "exact":
            lines.append(f"      {_key(s.path)}: {s.records[0]}   # {_comment(s.matched)}")
        elif s.kind == "ambiguous":
            for ref in s.records[:5]:
                lines.append(f"      # {_key(s.path)}: {ref}   # one of several named {_comment(s.matched)}")
        else:
            ref = s.records[0]
            lines.append(f"      # {_key(s.path)}: {ref}   # close match: {_comment(s.matched)}")
    for parent, children in _pattern_parents(mailbox, exact):
        lines.append(
            f"      # or, for all {children} subfolders of {parent}: {_key(parent + '/*')}: "
            "{record: {by: name_or_number}}"
        )
    return "\n".join(lines) + "\n"


def _pattern_parents(mailbox: Mailbox, exact: list[Suggestion]) -> list[tuple[str, int]]:
    """Parents with at least two subfolders, every one of which matched exactly."""
    matched = {s.path for s in exact}
    children: dict[str, list[str]] = defaultdict(list)
    for folder in mailbox.folders:
        if "/" in folder.path and folder.is_mail:
            children[folder.path.rsplit("/", 1)[0]].append(folder.path)
    return [
        (parent, len(paths))
        for parent, paths in sorted(children.items())
        if len(paths) >= 2 and all(p in matched for p in paths)
    ]


def _key(path: str) -> str:
    """A YAML mapping key for a rule path: plain when safe, else double-quoted (JSON is valid YAML)."""
    plain = path.replace(" ", "").replace("/", "").replace("-", "").replace(".", "").replace("_", "")
    return path if plain.isalnum() and not path[0].isdigit() else json.dumps(path, ensure_ascii=False)


def _comment(text: str) -> str:
    return json.dumps(" ".join(text.split()), ensure_ascii=False)
