"""Rules + a mailbox's folder tree → the folders to track, each with its regarding record.

Pure: the same rules, tree, pins and record directory give the same targets. Folder rules are pinned to
the folder id they first resolved to, so a renamed or moved folder stays tracked (and is reported as a
stale path); a pinned folder that is gone, or was moved into Deleted Items, is reported as deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from foldertrack.exchange.hierarchy import FolderTree
from foldertrack.model import RecordRef
from foldertrack.rules.paths import same_path

#: (record type or None, text, by) → record or None; ``by`` is "name", "number" or "name_or_number".
RecordFinder = Callable[[str | None, str, str], RecordRef | None]


@dataclass(frozen=True)
class Target:
    """One tracked folder: where it is now, which rule made it tracked, and its record (None: no regarding)."""

    mailbox: str
    folder_id: str
    path: str
    configured_path: str
    rule: object  # foldertrack.rules.model.FolderRule
    record: RecordRef | None
    via: str  # "rule", "pattern", "subfolder"

    @property
    def rule_source(self) -> str:
        return f"{getattr(self.rule, 'source', '?')}:{getattr(self.rule, 'line', 0)}"


@dataclass(frozen=True)
class RuleIssue:
    """Drift or a broken rule, shown by ``status``: stale path, deleted folder, nothing matched, no record."""

    mailbox: str
    rule_source: str
    path: str
    kind: str  # "stale_path", "folder_deleted", "folder_not_found", "no_match", "record_not_found"
    message: str


def resolve_targets(
    mailbox: str,
    rules: Iterable[object],
    tree: FolderTree,
    find_record: RecordFinder,
    pins: Mapping[str, str],
) -> tuple[list[Target], list[RuleIssue]]:
    """``pins`` maps a rule's configured path to the folder id it was resolved to before."""
    targets: dict[str, Target] = {}
    issues: list[RuleIssue] = []
    rules = list(rules)
    # explicit folder rules first, so they win over patterns and inherited subfolders
    ordered = sorted(rules, key=lambda r: (bool(getattr(r, "is_pattern", False)), len(r.segments)))
    inherited: list[Target] = []
    for rule in ordered:
        source = f"{rule.source}:{rule.line}"
        if getattr(rule, "is_pattern", False):
            parent_path = rule.path.rstrip("*").rstrip("/")
            parent_id = tree.find(rule.segments)
            if parent_id is None:
                issues.append(
                    RuleIssue(
                        mailbox,
                        source,
                        rule.path,
                        "folder_not_found",
                        f"pattern parent {parent_path!r} does not exist",
                    )
                )
                continue
            children = tree.children(parent_id)
            if not children:
                issues.append(
                    RuleIssue(mailbox, source, rule.path, "no_match", "pattern matches no folder yet")
                )
            for child in children:
                if child.id in targets:
                    continue
                record = _lookup(rule, child.name, find_record)
                if record is None:
                    issues.append(
                        RuleIssue(
                            mailbox,
                            source,
                            f"{parent_path}/{child.name}",
                            "record_not_found",
                            f"no record found for folder name {child.name!r}",
                        )
                    )
                    continue
                target = Target(
                    mailbox,
                    child.id,
                    tree.path_of(child.id) or child.name,
                    rule.path,
                    rule,
                    record,
                    "pattern",
                )
                targets[child.id] = target
                inherited.append(target)
            continue
        folder_id = pins.get(rule.path)
        gone = _gone(tree, rule, folder_id)
        if gone is not None:
            # a folder created at the rule's path since is the rule's folder now; else the rule is broken
            folder_id = tree.find(rule.segments)
            if folder_id is None:
                issues.append(
                    RuleIssue(
                        mailbox,
                        source,
                        rule.path,
                        "folder_deleted",
                        f"folder {rule.path!r} was deleted{gone}: the rule is broken (its activities are kept)",
                    )
                )
                continue
        if folder_id is None:
            folder_id = tree.find(rule.segments)
        if folder_id is None:
            issues.append(
                RuleIssue(
                    mailbox, source, rule.path, "folder_not_found", f"folder {rule.path!r} does not exist"
                )
            )
            continue
        current = tree.path_of(folder_id) or rule.path
        if not same_path(current, rule.path):
            issues.append(
                RuleIssue(
                    mailbox,
                    source,
                    rule.path,
                    "stale_path",
                    f"folder {rule.path!r} is now {current!r}; tracking follows it, update the rule",
                )
            )
        record = _record_of(rule, find_record)
        if record is _MISSING:
            issues.append(
                RuleIssue(
                    mailbox,
                    source,
                    rule.path,
                    "record_not_found",
                    f"no record found for {_describe_lookup(rule.record)}",
                )
            )
            continue
        target = Target(mailbox, folder_id, current, rule.path, rule, record, "rule")
        if folder_id not in targets or targets[folder_id].via != "rule":
            targets[folder_id] = target
        if getattr(rule, "include_subfolders", False):
            inherited.append(target)
    for parent in inherited:
        if not getattr(parent.rule, "include_subfolders", False):
            continue
        for node in tree.descendants(parent.folder_id):
            if node.id not in targets:
                targets[node.id] = Target(
                    mailbox,
                    node.id,
                    tree.path_of(node.id) or node.name,
                    parent.configured_path,
                    parent.rule,
                    parent.record,
                    "subfolder",
                )
    return sorted(targets.values(), key=lambda t: t.path.casefold()), issues


def anchors(rules: Iterable[object], tree: FolderTree, issues: Iterable[RuleIssue]) -> set[str]:
    """Folders to subscribe to so that a broken rule heals by itself: for each rule whose folder (or pattern
    parent) does not exist or was deleted, the deepest folder of its path that exists. Creating, restoring
    or moving a folder there names that folder in an event, which makes the watcher resolve again."""
    broken = {(i.rule_source, i.path) for i in issues if i.kind in ("folder_not_found", "folder_deleted")}
    return {
        tree.nearest(rule.segments) for rule in rules if (f"{rule.source}:{rule.line}", rule.path) in broken
    }


def _gone(tree: FolderTree, rule, folder_id: str | None) -> str | None:
    """Why the pinned folder no longer serves the rule (``""``: deleted; ``" (moved to …)"``: in Deleted
    Items), or None when it does (or nothing is pinned)."""
    if folder_id is None:
        return None
    if folder_id not in tree.nodes:
        return ""
    current = tree.path_of(folder_id) or rule.path
    if not same_path(current, rule.path) and tree.in_trash(folder_id):
        return f" (moved to {current!r})"
    return None


_MISSING = RecordRef("account", "__missing__")


def _record_of(rule, find_record: RecordFinder) -> RecordRef | None:
    ref = getattr(rule, "record", None)
    if ref is None or isinstance(ref, RecordRef):
        return ref
    found = find_record(getattr(ref, "type", None), ref.value, getattr(ref, "by", "name_or_number"))
    return found if found is not None else _MISSING


def _lookup(rule, folder_name: str, find_record: RecordFinder) -> RecordRef | None:
    ref = getattr(rule, "record", None)
    kind = getattr(ref, "type", None) if ref is not None else None
    by = getattr(ref, "by", "name_or_number") if ref is not None else "name_or_number"
    return find_record(kind, folder_name, by)


def _describe_lookup(ref) -> str:
    kind = getattr(ref, "type", None) or "record"
    return f"{kind} with {getattr(ref, 'by', 'name')} {getattr(ref, 'value', '?')!r}"
