"""``foldertrack explain`` (one mail's story, or why it was never tracked) and ``foldertrack conflicts``."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import Engine

from foldertrack.cli.activities_cmd import format_table
from foldertrack.cli.common import json_option
from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.cli.inspect_support import exchange_reader
from foldertrack.config import load_config
from foldertrack.errors import ExchangeError, RuleError
from foldertrack.explain import Sighting, Story, find_stories, locate, mailboxes_of
from foldertrack.inspect.conflicts import list_conflicts
from foldertrack.inspect.reader import connection_problems
from foldertrack.rules import RuleSet, load_rules

EXIT_NOT_FOUND = 1


@click.command()
@click.argument("message_id", metavar="[MESSAGE-ID]", required=False)
@click.option("--subject", metavar="TEXT", help="Find the mail by a part of its subject instead.")
@click.option("--mailbox", metavar="ADDRESS", help="Only this mailbox (database and Exchange).")
@click.option("--offline", is_flag=True, help="Only the state database: do not search Exchange.")
@json_option
@database_options
@click.pass_context
def explain(
    ctx: click.Context,
    message_id: str | None,
    subject: str | None,
    mailbox: str | None,
    offline: bool,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """The story of one mail: the activity and its record, each folder it was seen in, conflicts,
    failures and deliveries; and, searching Exchange (read-only), where it is now and why it is or is not
    tracked there. Exits 1 when the mail is found nowhere."""
    if (message_id is None) == (subject is None):
        raise click.UsageError("give either a MESSAGE-ID or --subject TEXT")
    engine = open_command_database(config_path, database_url)
    try:
        stories = find_stories(engine, message_id=message_id, subject=subject, mailbox=mailbox)
        sightings: list[Sighting] = []
        notes: list[str] = []
        if not offline:
            sightings, notes = _search_exchange(engine, config_path, message_id, subject, mailbox)
    finally:
        engine.dispose()
    known = [s for s in stories if s.verdict != "never tracked"]
    if message_id is not None and not known and stories and sightings:
        stories[0].verdict = "never tracked: " + "; ".join(f"{s.folder}: {s.reason}" for s in sightings)
        known = stories
    if as_json:
        data = {
            "mails": [s.to_json() for s in known],
            "exchange": [s.__dict__ for s in sightings],
            "notes": notes,
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for note in notes:
            click.echo(f"note: {note}", err=True)
        for story in known:
            click.echo("\n".join(_story_lines(story)))
        if sightings:
            click.echo("in Exchange now:")
            click.echo("\n".join(_sighting_lines(sightings)))
    if not known and not sightings:
        what = f"Message-ID {message_id}" if message_id is not None else f"subject containing {subject!r}"
        click.echo(f"error: no mail with {what} in the state database or in Exchange", err=True)
        ctx.exit(EXIT_NOT_FOUND)


def _search_exchange(
    engine: Engine, config_path: str | None, message_id: str | None, subject: str | None, mailbox: str | None
) -> tuple[list[Sighting], list[str]]:
    config = load_config(config_path, required=False)
    problems = connection_problems(config)
    if problems:
        return [], [f"Exchange not searched ({problems[0]}); --offline silences this"]
    try:
        rule_set: RuleSet | None = load_rules(config.rules.dir)
    except RuleError as exc:
        rule_set = None
        note = [f"rules not loaded: {exc.problems[0]}"]
    else:
        note = []
    boxes = [mailbox.strip().lower()] if mailbox else mailboxes_of(engine, rule_set)
    try:
        with exchange_reader(config) as reader:
            found = locate(reader, engine, rule_set, boxes, message_id=message_id, subject=subject)
    except ExchangeError as exc:
        return [], [*note, f"Exchange not searched: {exc}"]
    return found, note


def _story_lines(story: Story) -> list[str]:
    lines = [
        f"{story.message_id or story.key}  {story.subject or '(no subject)'}",
        f"  verdict: {story.verdict}",
    ]
    if story.activity:
        a = story.activity
        lines.append(
            f"  activity: {a['state']}, {a['mailbox']} {a['folder_path']}, tracked {_when(a['tracked_at'])}"
        )
    if story.seen:
        lines.append("  seen in (ledger):")
        for s in story.seen:
            lines.append(
                f"    {s['mailbox']}  {s['folder']}  {s['state']}  since {_when(s['first_seen_at'])}"
            )
    for c in story.conflicts:
        lines.append(
            f"  conflict: {c['mailbox']} {c['folder']} ({c['policy']}): kept {c['kept'] or 'no record'}, "
            f"not {c['other'] or 'no record'} ({_when(c['at'])})"
        )
    for c in story.collisions:
        lines.append(
            f"  Message-ID reused by a different mail: {c['mailbox']} {c['folder']} "
            f"from {c['sender'] or '?'} {c['subject']!r} ({_when(c['at'])}): not tracked, first content kept"
        )
    for f in story.failures:
        lines.append(
            f"  failure #{f['id']} ({f['status']}, {f['attempts']} attempt(s)) in {f['mailbox']} {f['folder']}: "
            f"{f['error']}"
        )
    for d in story.deliveries:
        lines.append(
            f"  delivery to {d.get('sink')}: {d.get('op')} {d.get('status')} after {d.get('attempts')} attempt(s)"
            + (f": {d['last_error']}" if d.get("last_error") else "")
        )
    return lines


def _sighting_lines(sightings: list[Sighting]) -> list[str]:
    return [
        f"  {s.mailbox}  {s.folder}  {s.subject or '(no subject)'}  received {s.received or '?'}: {s.reason}"
        for s in sightings
    ]


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z" if value is not None else "-"


@click.command()
@click.option("--mailbox", metavar="ADDRESS", help="Only conflicts this mailbox took part in.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many, newest first.")
@json_option
@database_options
def conflicts(
    mailbox: str | None, limit: int | None, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Mails filed to different records from different mailboxes, with the policy applied (newest first)."""
    engine = open_command_database(config_path, database_url)
    try:
        found = list_conflicts(engine, mailbox=mailbox, limit=limit)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([c.to_json() for c in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("no conflicts")
        return
    rows = [
        (
            f"{c.at:%Y-%m-%d %H:%M:%S}",
            c.subject or c.key,
            f"{c.mailbox} {c.folder}",
            c.policy,
            c.kept or "(none)",
            c.other or "(none)",
            c.current or "(none)",
        )
        for c in found
    ]
    click.echo(format_table(("AT (UTC)", "MAIL", "FILED BY", "POLICY", "KEPT", "NOT KEPT", "NOW"), rows))
