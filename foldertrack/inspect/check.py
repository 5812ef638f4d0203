"""``rules check --online``: every rule resolved against Exchange and the record directory, read-only.

Per mailbox: can the service account open it. Per rule: the folder (or pattern parent) exists, else the
nearest existing paths; the record exists in the directory (a fixed ``TYPE:ID`` missing there, or a lookup
finding nothing or several, is a warning: records may be imported later); a pattern's current matches.
Errors (mailbox not accessible, folder missing) make the check fail; warnings do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from foldertrack.errors import ExchangeError
from foldertrack.inspect.exchange import Mailbox
from foldertrack.inspect.folders import did_you_mean
from foldertrack.inspect.reader import MailboxReader
from foldertrack.model import RecordRef
from foldertrack.rules.model import FolderRule, RecordLookup, RuleSet
from foldertrack.state.records import RecordDirectory

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Finding:
    """One result: ``severity`` is ``error``, ``warning`` or ``ok``; ``rule`` is ``file:line`` or None."""

    severity: str
    mailbox: str
    kind: str  # "mailbox", "folder", "record", "pattern", "directory"
    message: str
    rule: str | None = None
    path: str | None = None
    suggestions: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["suggestions"] = list(self.suggestions)
        return out

    def __str__(self) -> str:
        where = f"{self.rule}: " if self.rule else ""
        hint = ""
        if self.suggestions:
            hint = " (did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?)"
        return f"{where}{self.severity}: {self.mailbox}: {self.message}{hint}"


def check_online(
    rule_set: RuleSet,
    reader: MailboxReader,
    directory: RecordDirectory | None,
    *,
    directory_problem: str | None = None,
    progress: Progress | None = None,
) -> list[Finding]:
    """Findings for every mailbox and rule, in rule order; nothing is written anywhere."""
    findings: list[Finding] = []
    if directory is None:
        findings.append(
            Finding("warning", "*", "directory", f"records not checked: {directory_problem or 'no database'}")
        )
    mailboxes = rule_set.mailboxes()
    for done, address in enumerate(mailboxes):
        if progress is not None:
            progress(done, len(mailboxes), address)
        try:
            mailbox = reader.mailbox(address)
        except ExchangeError as exc:
            findings.append(Finding("error", address, "mailbox", f"cannot open the mailbox: {_access(exc)}"))
            continue
        findings.append(Finding("ok", address, "mailbox", f"mailbox opened ({len(mailbox.folders)} folders)"))
        for rule in rule_set.for_mailbox(address):
            findings += _check_rule(rule, mailbox, directory)
    if progress is not None:
        progress(len(mailboxes), len(mailboxes), "")
    return findings


def _access(exc: ExchangeError) -> str:
    text = str(exc).split(" failed: ", 1)[-1]
    if "ErrorImpersonateUserDenied" in text:
        text += " (grant the service account ApplicationImpersonation, or use exchange.access = delegate)"
    return text


def _check_rule(rule: FolderRule, mailbox: Mailbox, directory: RecordDirectory | None) -> list[Finding]:
    def finding(severity: str, kind: str, message: str, suggestions: list[str] | None = None) -> Finding:
        return Finding(
            severity, mailbox.address, kind, message, rule.location, rule.path, tuple(suggestions or ())
        )

    tree = mailbox.tree
    folder_id = tree.find(rule.segments)
    shown = rule.path[:-2] if rule.is_pattern else rule.path
    if folder_id is None:
        what = "pattern parent" if rule.is_pattern else "folder"
        return [
            finding(
                "error",
                "folder",
                f"{what} {shown!r} does not exist",
                did_you_mean(shown, mailbox.mail_paths()),
            )
        ]
    info = mailbox.by_id().get(folder_id)
    if rule.is_pattern:
        return [_check_pattern(rule, mailbox, folder_id, directory, finding)]
    items = f"{info.total} item(s)" if info is not None and info.total is not None else "found"
    below = ""
    if rule.include_subfolders:
        below = f", {sum(1 for _ in tree.descendants(folder_id))} subfolder(s) included"
    out = [finding("ok", "folder", f"{rule.path}: folder found ({items}{below})")]
    if directory is not None:
        out.append(_check_record(rule.record, directory, finding))
    return out


def _check_record(record, directory: RecordDirectory, finding) -> Finding:
    if record is None:
        return finding("ok", "record", "tracked without a regarding record")
    if isinstance(record, RecordRef):
        found = directory.get(record)
        if found is None:
            return finding("warning", "record", f"record {record} is not in the record directory")
        return finding("ok", "record", f"record {record} ({found.name})")
    assert isinstance(record, RecordLookup) and record.value is not None
    lookup = directory.lookup(record.type, record.value, record.by)
    if lookup.ambiguous:
        names = ", ".join(str(r) for r in lookup.matches[:5])
        return finding("warning", "record", f"{record} is ambiguous: {names}")
    if lookup.record is None:
        return finding("warning", "record", f"no {record} in the record directory (yet)")
    return finding("ok", "record", f"{record}: {lookup.record} ({lookup.record.name})")


def _check_pattern(
    rule: FolderRule, mailbox: Mailbox, parent_id: str, directory: RecordDirectory | None, finding
) -> Finding:
    children = mailbox.tree.children(parent_id)
    if not children:
        return finding("warning", "pattern", f"{rule.path}: matches no folder yet")
    if directory is None:
        return finding(
            "ok", "pattern", f"{rule.path}: {len(children)} folder(s): " + ", ".join(c.name for c in children)
        )
    lookup_rule = rule.record if isinstance(rule.record, RecordLookup) else None
    parts, missing = [], 0
    for child in children:
        if lookup_rule is None:
            parts.append(f"{child.name} → {rule.record or '(no record)'}")
            continue
        result = directory.lookup(lookup_rule.type, child.name, lookup_rule.by)
        if result.record is not None:
            parts.append(f"{child.name} → {result.record}")
        else:
            missing += 1
            parts.append(f"{child.name} → {'ambiguous' if result.ambiguous else 'no record'}")
    severity = "warning" if missing else "ok"
    return finding(severity, "pattern", f"{rule.path}: {len(children)} folder(s): " + "; ".join(parts))
