"""``foldertrack rules check [DIR]``: validate rule files offline and show the effective mappings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from foldertrack.cli.common import config_option
from foldertrack.config import format_duration, load_config
from foldertrack.errors import RuleError, RuleProblem
from foldertrack.rules import FolderRule, RuleSet, load_rules

RuleCheck = Callable[[RuleSet], list[RuleProblem]]


def extra_checks() -> list[RuleCheck]:
    """Checks of a valid rule set beyond the offline validation; none yet.

    Extension point: the Exchange part adds a ``--connect`` option whose check connects, resolves every
    rule's folder and reports missing folders as ``path:line`` problems (``RuleProblem``), so the output
    and exit code stay those of offline checking.
    """
    return []


@click.group()
def rules() -> None:
    """Check the rule files that map folders to records."""


@rules.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@config_option
def check(directory: Path | None, config_path: str | None) -> None:
    """Validate every rule file in DIRECTORY (default: the configured rules.dir).

    Prints the effective mappings, or one `path:line: message` per problem (all of them) and exits 1.
    """
    if directory is None:
        directory = load_config(config_path, required=config_path is not None).rules.dir
    rule_set = load_rules(directory)
    problems = [problem for extra in extra_checks() for problem in extra(rule_set)]
    if problems:
        raise RuleError(problems)
    click.echo(format_rule_table(rule_set))
    click.echo(f"\n{len(rule_set.rules)} folder rule(s), {len(rule_set.mailboxes())} mailbox(es), "
               f"{len(rule_set.files)} file(s): OK")  # fmt: skip


def _backfill(rule: FolderRule) -> str:
    if not rule.backfill:
        return "no"
    return f"since {format_duration(rule.backfill_since)}" if rule.backfill_since else "yes"


def format_rule_table(rule_set: RuleSet) -> str:
    """One row per mailbox folder rule, columns aligned."""
    header = ("MAILBOX", "FOLDER", "RECORD", "SUBFOLDERS", "BACKFILL", "ON_LEAVE", "DUPLICATES", "SOURCE")
    rows = [header]
    for rule in rule_set.rules:
        rows.append(
            (
                rule.mailbox,
                rule.path,
                "(none)" if rule.record is None else str(rule.record),
                "yes" if rule.include_subfolders else "no",
                _backfill(rule),
                rule.on_leave,
                rule.duplicates,
                rule.location,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
