"""A mailbox's folder tree annotated with the rules: which rule tracks each folder, or why none does.

Resolution is the watcher's own (:func:`foldertrack.targets.resolve_targets`) on a fresh tree with no
pins, so what this shows is what a watcher starting now would track.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, replace
from typing import Any

from foldertrack.inspect.exchange import FolderInfo, Mailbox
from foldertrack.model import RecordRef
from foldertrack.rules.model import FolderRule, RuleSet
from foldertrack.state.records import RecordDirectory
from foldertrack.targets import RecordFinder, RuleIssue, Target, resolve_targets


@dataclass(frozen=True)
class FolderRow:
    """One folder with the rule that tracks it (``rule`` is ``file:line``), or ``note`` saying why not."""

    path: str
    id: str
    items: int | None
    children: int | None
    mail: bool
    tracked: bool
    rule: str | None
    record: str | None
    via: str | None  # "rule", "pattern", "subfolder"
    note: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Resolution:
    """Targets and issues of one mailbox's rules against its current tree."""

    mailbox: Mailbox
    rules: tuple[FolderRule, ...]
    targets: tuple[Target, ...]
    issues: tuple[RuleIssue, ...]


def record_finder(directory: RecordDirectory | None) -> RecordFinder:
    """The watcher's lookup (exactly one match) over the record directory; nothing without one."""
    if directory is None:
        return lambda _type, _text, _by: None
    return lambda kind, text, by: directory.find(kind, text, by)  # type: ignore[arg-type]


def resolve(mailbox: Mailbox, rule_set: RuleSet, directory: RecordDirectory | None) -> Resolution:
    rules = rule_set.for_mailbox(mailbox.address)
    targets, issues = resolve_targets(mailbox.address, rules, mailbox.tree, record_finder(directory), {})
    if directory is not None:  # a TYPE:ID in a rule has no name: show the directory's
        named = {}
        for t in targets:
            if t.record is not None and t.record.name is None and t.record not in named:
                named[t.record] = directory.get(t.record) or t.record
        targets = [replace(t, record=named.get(t.record, t.record)) for t in targets]
    return Resolution(mailbox, rules, tuple(targets), tuple(issues))


def folder_rows(resolution: Resolution, rule_set: RuleSet) -> list[FolderRow]:
    """Every folder of the mailbox, tracked or not, with the reason where a rule reaches it but fails."""
    by_folder = {t.folder_id: t for t in resolution.targets}
    issues_by_path = {i.path.casefold(): i for i in resolution.issues}
    rows = []
    for folder in resolution.mailbox.folders:
        target = by_folder.get(folder.id)
        if target is not None:
            rows.append(_row(folder, target=target))
            continue
        rows.append(_row(folder, note=_why_not(folder, resolution, rule_set, issues_by_path)))
    return rows


def _row(folder: FolderInfo, *, target: Target | None = None, note: str | None = None) -> FolderRow:
    record = None
    if target is not None:
        record = _record_text(target.record)
    return FolderRow(
        path=folder.path,
        id=folder.id,
        items=folder.total,
        children=folder.children,
        mail=folder.is_mail,
        tracked=target is not None,
        rule=target.rule_source if target else None,
        record=record,
        via=target.via if target else None,
        note=note,
    )


def _record_text(record: RecordRef | None) -> str:
    if record is None:
        return "(no record)"
    return f"{record}" + (f" ({record.name})" if record.name else "")


def _why_not(
    folder: FolderInfo, resolution: Resolution, rule_set: RuleSet, issues: dict[str, RuleIssue]
) -> str | None:
    """Why a folder some rule reaches is not tracked (None when no rule is about it)."""
    issue = issues.get(folder.path.casefold())
    if issue is not None:
        return f"{issue.message} ({_short(issue.rule_source)})"
    match = rule_set.match(resolution.mailbox.address, folder.path)
    if match is not None:
        return f"matches {_short(match.rule.location)} but is not resolved"
    if not folder.is_mail:
        return f"not a mail folder ({folder.folder_class})"
    return None


def missing_rules(resolution: Resolution) -> list[tuple[RuleIssue, list[str]]]:
    """Rules whose folder (or pattern parent) does not exist, each with "did you mean" paths."""
    paths = resolution.mailbox.mail_paths()
    out = []
    for issue in resolution.issues:
        if issue.kind in ("folder_not_found", "folder_deleted"):
            wanted = issue.path[:-2] if issue.path.endswith("/*") else issue.path
            out.append((issue, did_you_mean(wanted, paths)))
    return out


def did_you_mean(path: str, candidates: list[str], n: int = 3) -> list[str]:
    """The nearest existing paths, compared case-insensitively (a typo in any segment counts); only those
    about as close as the best one, so a clear winner is suggested alone."""
    wanted = path.casefold()
    scored = []
    for candidate in candidates:
        matcher = difflib.SequenceMatcher(None, wanted, candidate.casefold())
        if matcher.real_quick_ratio() >= 0.7 and matcher.quick_ratio() >= 0.7:
            scored.append((matcher.ratio(), candidate))
    scored = sorted((s for s in scored if s[0] >= 0.7), key=lambda s: (-s[0], s[1]))
    if not scored:
        return []
    best = scored[0][0]
    return [c for score, c in scored[:n] if score >= best - 0.05]


def _short(source: str) -> str:
    """``/etc/foldertrack/rules/sales.yaml:12`` → ``sales.yaml:12``."""
    head, _, line = source.rpartition(":")
    return f"{head.rsplit('/', 1)[-1]}:{line}" if head else source
