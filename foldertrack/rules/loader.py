"""Directory of rule files → validated :class:`RuleSet`, or :class:`RuleError` with every problem.

A pure function of the files' bytes: the watcher can call it on reload, keep the old set when it raises,
and swap in the new one atomically when it does not.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from foldertrack.config import format_duration
from foldertrack.errors import RuleError, RuleProblem
from foldertrack.rules.model import FolderRule, RuleSet
from foldertrack.rules.validation import parse_document
from foldertrack.rules.yamlnodes import NodeReader, compose_file

RULE_SUFFIXES = (".yaml", ".yml")


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a directory, sorted: ``*.yaml``/``*.yml``, not hidden (editor temp files)."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in RULE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def parse_rule_file(data: bytes, source: str) -> tuple[list[FolderRule], list[RuleProblem]]:
    """The rules of one file's bytes, and its problems (``source`` names the file in both)."""
    root, problems = compose_file(data, source)
    if root is None:
        return [], problems
    reader = NodeReader(source)
    rules = parse_document(root, reader)
    return rules, problems + reader.problems


def load_rules(directory: str | os.PathLike[str]) -> RuleSet:
    """Load and validate every rule file in ``directory``; raises RuleError listing all problems."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RuleError([RuleProblem(str(directory), 0, "rules directory does not exist")])
    files = rule_files(directory)
    if not files:
        raise RuleError([RuleProblem(str(directory), 0, "no rule files (*.yaml) in the rules directory")])
    rules: list[FolderRule] = []
    problems: list[RuleProblem] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(RuleProblem(str(path), 0, f"cannot read: {exc.strerror}"))
            continue
        file_rules, file_problems = parse_rule_file(data, str(path))
        rules += file_rules
        problems += file_problems
    unique, conflicts = merge_duplicates(rules)
    problems += conflicts
    if problems:
        raise RuleError(problems)
    return RuleSet(tuple(unique), files=tuple(str(path) for path in files))


def _record_text(rule: FolderRule) -> str:
    return "no record" if rule.record is None else str(rule.record)


def merge_duplicates(rules: list[FolderRule]) -> tuple[list[FolderRule], list[RuleProblem]]:
    """One rule per mailbox+folder. The same mapping twice is fine; different records (or options) for the
    same folder are reported at both places."""
    groups: dict[tuple[str, str], list[FolderRule]] = {}
    for rule in rules:
        groups.setdefault(rule.key, []).append(rule)
    unique, problems = [], []
    for group in groups.values():
        first = group[0]
        unique.append(first)
        for other in group[1:]:
            if other.record != first.record:
                for here, there in ((other, first), (first, other)):
                    problems.append(
                        RuleProblem(
                            here.source,
                            here.line,
                            f"folder {here.path!r} of {here.mailbox} is mapped to {_record_text(here)} here "
                            f"but to {_record_text(there)} at {there.location}",
                        )
                    )
            elif other.options() != first.options():
                mine, theirs = other.options(), first.options()
                diff = ", ".join(
                    f"{key}: {_show(theirs[key])} there, {_show(mine[key])} here"
                    for key in mine
                    if mine[key] != theirs[key]
                )
                problems.append(
                    RuleProblem(
                        other.source,
                        other.line,
                        f"folder {other.path!r} of {other.mailbox} is also mapped at {first.location} "
                        f"with other options ({diff})",
                    )
                )
    return unique, problems


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)
