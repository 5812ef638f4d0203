"""``foldertrack folders MAILBOX``: the mailbox's folder tree, each folder marked with the rule that tracks
it (``file:line``) or why a rule reaching it does not; rules whose folder is missing, with "did you mean"."""

from __future__ import annotations

import json
from pathlib import Path

import click

from foldertrack.cli.activities_cmd import format_table
from foldertrack.cli.common import json_option
from foldertrack.cli.db_options import database_options
from foldertrack.cli.inspect_support import exchange_reader, load_command_config, optional_directory
from foldertrack.errors import RuleError
from foldertrack.inspect.folders import folder_rows, missing_rules, resolve
from foldertrack.rules import RuleSet, load_rules


@click.command()
@click.argument("mailbox")
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Rules directory (default: the configured rules.dir).",
)
@json_option
@database_options
def folders(
    mailbox: str, rules_dir: Path | None, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Show MAILBOX's folders (path, items, subfolders) and which rule tracks each (read-only).

    Needs the Exchange connection from the configuration; the record directory (database) is used when
    it exists, to resolve record lookups.
    """
    config = load_command_config(config_path)
    mailbox = mailbox.strip().lower()
    try:
        rule_set = load_rules(rules_dir or config.rules.dir)
    except RuleError as exc:
        rule_set = RuleSet()
        click.echo(f"warning: rules not applied: {exc.problems[0]}", err=True)
    with optional_directory(config_path, database_url) as (directory, _engine, problem):
        if problem and rule_set.for_mailbox(mailbox):
            click.echo(f"warning: record lookups not resolved: {problem}", err=True)
        with exchange_reader(config) as reader:
            resolution = resolve(reader.mailbox(mailbox), rule_set, directory)
    rows = folder_rows(resolution, rule_set)
    missing = missing_rules(resolution)
    if as_json:
        data = {
            "mailbox": mailbox,
            "folders": [r.to_json() for r in rows],
            "missing": [
                {"rule": i.rule_source, "path": i.path, "message": i.message, "suggestions": s}
                for i, s in missing
            ],
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    table = [
        (
            r.path,
            "-" if r.items is None else str(r.items),
            "-" if r.children is None else str(r.children),
            _tracked(r),
        )
        for r in rows
    ]
    click.echo(format_table(("FOLDER", "ITEMS", "SUBFOLDERS", "TRACKING"), table, max_width=80))
    tracked = sum(1 for r in rows if r.tracked)
    click.echo(f"\n{len(rows)} folder(s), {tracked} tracked by {len(resolution.rules)} rule(s)")
    for issue, suggestions in missing:
        hint = " (did you mean " + " or ".join(repr(s) for s in suggestions) + "?)" if suggestions else ""
        click.echo(f"{_short(issue.rule_source)}: error: {issue.message}{hint}")


def _tracked(row) -> str:
    if row.tracked:
        via = "" if row.via == "rule" else f", {row.via}"
        return f"{row.record} ← {_short(row.rule)}{via}"
    return f"- {row.note}" if row.note else ""


def _short(source: str | None) -> str:
    if not source:
        return ""
    head, _, line = source.rpartition(":")
    return f"{Path(head).name}:{line}"
