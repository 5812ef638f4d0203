"""``foldertrack rules``: check rule files (offline, or ``--online`` against Exchange and the record
directory), preview what they would track now, and suggest a starting file from a mailbox's folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from foldertrack.cli.common import json_option
from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.cli.inspect_support import (
    exchange_reader,
    load_command_config,
    optional_directory,
    progress_option,
    progress_printer,
)
from foldertrack.config import format_duration, load_config
from foldertrack.errors import RuleError
from foldertrack.inspect.check import check_online
from foldertrack.inspect.folders import resolve
from foldertrack.inspect.preview import preview as preview_folders
from foldertrack.inspect.suggest import render_rules, suggestions
from foldertrack.rules import FolderRule, RuleSet, load_rules
from foldertrack.state.records import RecordDirectory

EXIT_INVALID = 1

directory_argument = click.argument(
    "directory", required=False, type=click.Path(file_okay=False, path_type=Path)
)


@click.group()
def rules() -> None:
    """Check the rule files that map folders to records."""


@rules.command("check")
@directory_argument
@click.option("--online", is_flag=True, help="Also resolve every rule against Exchange and the records.")
@json_option
@progress_option
@database_options
@click.pass_context
def check(
    ctx: click.Context,
    directory: Path | None,
    online: bool,
    as_json: bool,
    progress: bool | None,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Validate every rule file in DIRECTORY (default: the configured rules.dir).

    Prints the effective mappings, or one `path:line: message` per problem (all of them) and exits 1.
    With --online it also opens each mailbox (read-only) and reports every folder found or missing (with
    the nearest existing paths), every record found, missing or ambiguous, and each pattern's matches;
    a missing folder or an inaccessible mailbox exits 1, record problems are warnings.
    """
    if directory is None or online:
        config = load_config(config_path, required=config_path is not None or online)
        directory = directory or config.rules.dir
    try:
        rule_set = load_rules(directory)
    except RuleError as exc:
        if not as_json:
            raise
        problems = [{"path": p.path, "line": p.line, "message": p.message} for p in exc.problems]
        click.echo(json.dumps({"valid": False, "problems": problems}, indent=2, ensure_ascii=False))
        ctx.exit(EXIT_INVALID)
    findings = []
    if online:
        with (
            optional_directory(config_path, database_url) as (records, _engine, problem),
            exchange_reader(config) as reader,
        ):
            findings = check_online(
                rule_set,
                reader,
                records,
                directory_problem=problem,
                progress=progress_printer("mailboxes", progress),
            )
    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        data: dict[str, Any] = {
            "valid": not errors,
            "problems": [],
            "rules": [_rule_json(r) for r in rule_set.rules],
        }
        if online:
            data["online"] = [f.to_json() for f in findings]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(format_rule_table(rule_set))
        for finding in findings:
            click.echo(str(finding), err=finding.severity != "ok")
        warnings = sum(1 for f in findings if f.severity == "warning")
        verdict = "OK" if not errors else f"{len(errors)} error(s)"
        if online:
            verdict += f", {warnings} warning(s) (online)"
        click.echo(
            f"\n{len(rule_set.rules)} folder rule(s), {len(rule_set.mailboxes())} mailbox(es), "
            f"{len(rule_set.files)} file(s): {verdict}"
        )
    if errors:
        ctx.exit(EXIT_INVALID)


@rules.command("preview")
@directory_argument
@click.option("--mailbox", "only", metavar="ADDRESS", help="Only this mailbox.")
@click.option(
    "--sample", type=click.IntRange(0, 50), default=3, show_default=True, help="Subjects per folder."
)
@json_option
@progress_option
@database_options
def preview(
    directory: Path | None,
    only: str | None,
    sample: int,
    as_json: bool,
    progress: bool | None,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """What the rules would track now: per folder, the mails a first sync would take (honouring backfill
    and backfill_since), the newest subjects and the record. Reads Exchange; writes nothing."""
    config = load_command_config(config_path)
    rule_set = load_rules(directory or config.rules.dir)
    mailboxes = [only.strip().lower()] if only else list(rule_set.mailboxes())
    results, issues = [], []
    with (
        optional_directory(config_path, database_url) as (records, _engine, problem),
        exchange_reader(config) as reader,
    ):
        if problem:
            click.echo(f"warning: record lookups not resolved: {problem}", err=True)
        for address in mailboxes:
            resolution = resolve(reader.mailbox(address), rule_set, records)
            results += preview_folders(
                resolution, reader, sample=sample, progress=progress_printer(f"preview {address}", progress)
            )
            issues += resolution.issues
    if as_json:
        data = {
            "folders": [p.to_json() for p in results],
            "issues": [
                {
                    "mailbox": i.mailbox,
                    "rule": i.rule_source,
                    "kind": i.kind,
                    "path": i.path,
                    "message": i.message,
                }
                for i in issues
            ],
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for p in results:
        click.echo(f"{p.mailbox}  {p.path}  → {p.record or '(no record)'}  [{Path(p.rule).name}]")
        click.echo(f"  first sync takes {p.backfill} of {p.items} item(s): {p.policy}")
        for subject in p.newest:
            click.echo(f"    {subject or '(no subject)'}")
    for issue in issues:
        click.echo(f"warning: {issue.mailbox}: {issue.path}: {issue.message} [{issue.kind}]", err=True)
    total = sum(p.backfill for p in results)
    click.echo(
        f"\n{len(results)} folder(s) would be tracked; the first sync takes {total} mail(s); nothing written"
    )


@rules.command("suggest")
@click.argument("mailbox")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the file here (refuses to overwrite) instead of printing it.",
)
@json_option
@database_options
def suggest(
    mailbox: str, output: Path | None, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Print a starting rules file for MAILBOX: its folders matched to records in the directory by name or
    number (exact matches as rules, close or ambiguous ones as comments). Reads Exchange and the records."""
    config = load_command_config(config_path)
    engine = open_command_database(config_path, database_url)
    try:
        entries = RecordDirectory(engine).list()
    finally:
        engine.dispose()
    with exchange_reader(config) as reader:
        box = reader.mailbox(mailbox.strip().lower())
    found = suggestions(box, entries)
    text = render_rules(box, found)
    exact = sum(1 for s in found if s.kind == "exact")
    if as_json:
        data = [
            {"path": s.path, "match": s.kind, "matched": s.matched, "records": [str(r) for r in s.records]}
            for s in found
        ]
        click.echo(json.dumps({"mailbox": box.address, "suggestions": data, "rules": text}, indent=2))
        return
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            with output.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            raise click.ClickException(f"{output} exists; not overwritten") from None
        click.echo(f"wrote {output}")
    click.echo(
        f"{exact} rule(s), {len(found) - exact} commented suggestion(s), {len(entries)} record(s) compared",
        err=True,
    )


def _backfill(rule: FolderRule) -> str:
    if not rule.backfill:
        return "no"
    return f"since {format_duration(rule.backfill_since)}" if rule.backfill_since else "yes"


def _rule_json(rule: FolderRule) -> dict[str, Any]:
    return {
        "mailbox": rule.mailbox,
        "path": rule.path,
        "record": None if rule.record is None else str(rule.record),
        "include_subfolders": rule.include_subfolders,
        "backfill": _backfill(rule),
        "on_leave": rule.on_leave,
        "duplicates": rule.duplicates,
        "source": rule.location,
    }


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
