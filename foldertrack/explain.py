"""``foldertrack explain``: the whole story of one mail, or why it was never tracked.

From the state database: the activity and its regarding record, every tracked folder the ledger saw the
mail in (and whether it is still there), conflicts with other mailboxes, failed attempts and dead letters,
and the deliveries to an external sink. From Exchange (optional, read-only): where the mail is now and,
when it is not tracked, the reason — folder not tracked, pattern folder without a record, backfill
cutoff, not a mail, not synced yet, or moved in and out between two syncs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, inspect, select

from foldertrack.exchange.convert import mail_key, normalise_message_id
from foldertrack.rules.model import RuleSet
from foldertrack.state import schema
from foldertrack.state.schema import (
    activities,
    activity_links,
    conflicts,
    dead_letters,
    ledger,
    tracked_folders,
)
from foldertrack.state.watch_store import rule_issue_rows


@dataclass
class Sighting:
    """Where Exchange has the mail now, and what that means for tracking."""

    mailbox: str
    folder: str
    subject: str
    received: str | None
    tracked_folder: bool
    reason: str


@dataclass
class Story:
    """Everything known about one mail key; ``verdict`` is the one-line answer."""

    key: str
    subject: str | None = None
    message_id: str | None = None
    activity: dict[str, Any] | None = None
    link: dict[str, Any] | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    #: other mails that reused this Message-ID with different content (not tracked; first content kept)
    collisions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        return _plain(dict(self.__dict__))


def keys_for(message_id: str) -> list[str]:
    """The mail keys a Message-ID typed by a user may have: as given, and with angle brackets added."""
    text = normalise_message_id(message_id) or ""
    variants = [text] if text.startswith("<") else [text, f"<{text}>"]
    return [mail_key(v, None, None, None, None) for v in variants if v]


def find_stories(
    engine: Engine,
    *,
    message_id: str | None = None,
    subject: str | None = None,
    mailbox: str | None = None,
    limit: int = 5,
) -> list[Story]:
    """Stories of the mails with this Message-ID, or whose subject contains ``subject`` (newest first)."""
    mailbox = mailbox.strip().lower() if mailbox else None
    with engine.connect() as conn:
        if message_id is not None:
            keys = keys_for(message_id)
        else:
            keys = _keys_by_subject(conn, subject or "", mailbox, limit)
        stories = [_story(conn, key, mailbox) for key in keys]
    known = [s for s in stories if s.activity or s.seen or s.failures]
    if message_id is not None and not known:
        normalised = normalise_message_id(message_id)
        return [Story(key=keys[0] if keys else "", message_id=normalised, verdict="never tracked")]
    return known


def _keys_by_subject(conn: Connection, text: str, mailbox: str | None, limit: int) -> list[str]:
    pattern = f"%{text}%"
    query = select(activities.c.key).where(activities.c.subject.ilike(pattern))
    if mailbox:
        query = query.where(activities.c.mailbox == mailbox)
    keys = list(conn.execute(query.order_by(activities.c.tracked_at.desc()).limit(limit)).scalars())
    failed = select(dead_letters.c.mail_key).where(
        dead_letters.c.subject.ilike(pattern), dead_letters.c.mail_key.is_not(None)
    )
    if mailbox:
        failed = failed.where(dead_letters.c.mailbox == mailbox)
    keys += [k for k in conn.execute(failed.limit(limit)).scalars() if k not in keys]
    return keys[:limit]


def _story(conn: Connection, key: str, mailbox: str | None) -> Story:
    story = Story(key=key)
    row = conn.execute(select(activities).where(activities.c.key == key)).mappings().first()
    if row is not None:
        story.subject, story.message_id = row["subject"], row["message_id"]
        story.activity = {
            k: row[k]
            for k in (
                "mailbox",
                "folder_path",
                "regarding_type",
                "regarding_id",
                "regarding_name",
                "state",
                "tracked_at",
                "updated_at",
            )
        }
    link = conn.execute(select(activity_links).where(activity_links.c.activity_key == key)).mappings().first()
    if link is not None:
        story.link = dict(link)
        story.link["owner_folder"] = _path(conn, link["owner_mailbox"], link["owner_folder_id"])
    seen = select(ledger).where(ledger.c.activity_key == key).order_by(ledger.c.first_seen_at)
    if mailbox:
        seen = seen.where(ledger.c.mailbox == mailbox)
    for entry in conn.execute(seen).mappings():
        story.seen.append(
            {
                "mailbox": entry["mailbox"],
                "folder": _path(conn, entry["mailbox"], entry["folder_id"]),
                "state": entry["state"],
                "first_seen_at": entry["first_seen_at"],
                "updated_at": entry["updated_at"],
            }
        )
    for c in conn.execute(select(conflicts).where(conflicts.c.activity_key == key).order_by(conflicts.c.at)):
        story.conflicts.append(
            {
                "mailbox": c.mailbox,
                "folder": _path(conn, c.mailbox, c.folder_id),
                "policy": c.policy,
                "kept": c.kept_regarding,
                "other": c.other_regarding,
                "at": c.at,
            }
        )
    for d in conn.execute(select(dead_letters).where(dead_letters.c.mail_key == key)):
        story.subject = story.subject or d.subject
        story.failures.append(
            {
                "id": d.id,
                "mailbox": d.mailbox,
                "folder": _path(conn, d.mailbox, d.folder_id),
                "status": d.status,
                "attempts": d.attempts,
                "error": d.error,
                "last_attempt_at": d.last_attempt_at,
            }
        )
    story.collisions = _collisions(conn, key)
    story.deliveries = _deliveries(conn, key)
    story.verdict = _verdict(story)
    return story


def _path(conn: Connection, mailbox: str, folder_id: str) -> str:
    path = conn.execute(
        select(tracked_folders.c.current_path).where(
            tracked_folders.c.mailbox == mailbox, tracked_folders.c.folder_id == folder_id
        )
    ).scalar_one_or_none()
    return path or f"(folder {folder_id[:12]}…)"


def _collisions(conn: Connection, key: str) -> list[dict[str, Any]]:
    """Mails with different content that reused ``key``'s Message-ID (schema 0005 on; none before)."""
    table = getattr(schema, "key_collisions", None)
    if table is None or not inspect(conn).has_table(table.name):
        return []
    rows = conn.execute(select(table).where(table.c.activity_key == key).order_by(table.c.at)).mappings()
    return [
        {
            "mailbox": r["mailbox"],
            "folder": _path(conn, r["mailbox"], r["folder_id"]),
            "subject": r["subject"],
            "sender": r["sender"],
            "at": r["at"],
        }
        for r in rows
    ]


def _deliveries(conn: Connection, key: str) -> list[dict[str, Any]]:
    """Outbox entries for an external sink (present from schema 0003 on; none before)."""
    table = getattr(schema, "outbox", None)
    if table is None or not inspect(conn).has_table(table.name):
        return []
    rows = conn.execute(select(table).where(table.c.mail_key == key).order_by(table.c.id)).mappings()
    wanted = ("sink", "op", "status", "attempts", "last_error", "created_at", "delivered_at")
    return [{k: r[k] for k in wanted if k in r} for r in rows]


def _verdict(story: Story) -> str:
    link, act = story.link, story.activity
    if link is not None and link["state"] == "tracked":
        named = dict(link)
        if (
            not named.get("regarding_name")
            and act is not None
            and act["regarding_id"] == link["regarding_id"]
        ):
            named["regarding_name"] = act["regarding_name"]
        regarding = _regarding(named)
        where = f"{link['owner_mailbox']} {link['owner_folder']}"
        text = f"tracked from {where}, regarding {regarding}"
        if story.conflicts:
            text += f"; {len(story.conflicts)} conflict(s) with other mailboxes"
        if story.collisions:
            text += (
                f"; {len(story.collisions)} other mail(s) reused its Message-ID with different content"
                " (not tracked, first content kept)"
            )
        return text
    if link is not None:
        return f"untracked (moved out of {link['owner_folder']} with on_leave: untrack)"
    if act is not None:
        return f"activity {act['state']}"
    dead = [f for f in story.failures if f["status"] == "dead"]
    if dead:
        return f"dead-lettered: {dead[0]['error']} (replay with `foldertrack retry {dead[0]['id']}`)"
    if story.failures:
        return f"failing, retrying: {story.failures[0]['error']}"
    return "never tracked"


def _regarding(row: dict[str, Any]) -> str:
    if not row.get("regarding_type"):
        return "no record"
    name = f" ({row['regarding_name']})" if row.get("regarding_name") else ""
    return f"{row['regarding_type']}:{row['regarding_id']}{name}"


def why_not_tracked(
    engine: Engine, rule_set: RuleSet | None, mailbox: str, folder_path: str, folder_id: str, item: Any
) -> tuple[bool, str]:
    """(in a tracked folder?, reason) for an item Exchange has in ``folder_path`` but the ledger lacks."""
    item_class = (getattr(item, "item_class", None) or "IPM.Note").upper()
    if not item_class.startswith("IPM.NOTE"):
        return False, f"not a mail ({item.item_class}): only mails are tracked"
    with engine.connect() as conn:
        row = conn.execute(
            select(tracked_folders).where(
                tracked_folders.c.mailbox == mailbox,
                tracked_folders.c.folder_id == folder_id,
                tracked_folders.c.status != "retired",
            )
        ).first()
        issues = [i for i in rule_issue_rows(conn, mailbox) if i.path.casefold() == folder_path.casefold()]
    if row is None:
        if issues:
            return False, f"{issues[0].message} ({issues[0].rule_source}): the folder is not tracked"
        match = rule_set.match(mailbox, folder_path) if rule_set is not None else None
        if match is not None:
            return False, (
                f"{match.rule.location} matches this folder but the watcher has not resolved it yet "
                "(is it running? `foldertrack status`)"
            )
        return False, (
            "no rule tracks this folder (had it been moved into a tracked folder and out again between "
            "two syncs, the watcher never saw it there)"
        )
    received = getattr(item, "received", None)
    cutoff = _cutoff(row, rule_set, mailbox, folder_path)
    if cutoff is not None and received is not None and received < cutoff:
        return (
            True,
            f"received {received:%Y-%m-%d %H:%M}Z, before the backfill cutoff {cutoff:%Y-%m-%d %H:%M}Z",
        )
    last = row.last_sync_at
    when = f"{last:%Y-%m-%d %H:%M:%S}Z" if last else "never"
    return True, f"in a tracked folder but not synced yet (last sync of the folder: {when})"


def _cutoff(row: Any, rule_set: RuleSet | None, mailbox: str, path: str) -> datetime | None:
    match = rule_set.match(mailbox, path) if rule_set is not None else None
    if match is None:
        return None
    since: timedelta | None = match.rule.backfill_since
    if since is not None:
        return datetime.now(UTC) - since
    if not match.rule.backfill:
        created = row.created_at
        return created if created.tzinfo else created.replace(tzinfo=UTC)
    return None


def locate(
    reader: Any,
    engine: Engine,
    rule_set: RuleSet | None,
    mailboxes: list[str],
    *,
    message_id: str | None = None,
    subject: str | None = None,
) -> list[Sighting]:
    """Search the mailboxes' mail folders in Exchange (``reader``: a ``MailboxReader``, EWS or Graph) and
    say, for each copy found, whether it is tracked there and if not, why."""
    wanted = None
    if message_id is not None:
        text = normalise_message_id(message_id) or ""
        wanted = text if text.startswith("<") else f"<{text}>"
    found: list[Sighting] = []
    for address in mailboxes:
        mailbox = reader.mailbox(address)
        folders = {f.id: f for f in mailbox.folders if f.is_mail}
        for item in reader.find(address, list(folders), message_id=wanted, subject=subject):
            folder = folders[item.folder_id]
            with engine.connect() as conn:
                present = conn.execute(
                    select(ledger.c.id).where(
                        ledger.c.mailbox == address,
                        ledger.c.folder_id == item.folder_id,
                        ledger.c.state == "present",
                        ledger.c.mail_key.in_(keys_for(item.message_id) if item.message_id else []),
                    )
                ).first()
            if present is not None:
                tracked, reason = True, "tracked here"
            else:
                tracked, reason = why_not_tracked(
                    engine, rule_set, address, folder.path, item.folder_id, item
                )
            received = f"{item.received:%Y-%m-%d %H:%M:%S}Z" if item.received else None
            found.append(Sighting(address, folder.path, item.subject, received, tracked, reason))
    return found


def mailboxes_of(engine: Engine, rule_set: RuleSet | None) -> list[str]:
    """Mailboxes to search in Exchange: the rules' mailboxes, else those the database knows."""
    if rule_set is not None and rule_set.mailboxes():
        return list(rule_set.mailboxes())
    with engine.connect() as conn:
        return sorted(set(conn.execute(select(tracked_folders.c.mailbox).distinct()).scalars()))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
