"""One rule file's document → :class:`FolderRule` values, recording every problem with its line.

The format (see ``rules/example.yaml``)::

    defaults: {OPTION: VALUE, ...}              # optional, for every folder in the file
    mailboxes:
      - address: alice@example.com              # or addresses: [a@x, b@x]
        defaults: {OPTION: VALUE, ...}          # optional, for this block's folders
        folders:
          PATH: TYPE:ID                         # short form
          PATH: {record: RECORD, OPTION: VALUE, ...}

RECORD is ``TYPE:ID``, ``null`` (tracked without regarding), or a lookup
``{type: TYPE, name: NAME}`` / ``{type: TYPE, number: NUMBER}``; a pattern path (``Inbox/Customers/*``)
takes ``{type: TYPE, by: name | number | name_or_number}`` and looks up each subfolder's name.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from foldertrack.config import parse_duration
from foldertrack.model import RECORD_TYPES, RecordRef
from foldertrack.rules.model import (
    DUPLICATES,
    LOOKUP_BY,
    ON_LEAVE,
    FolderRule,
    Record,
    RecordLookup,
    SendOptions,
)
from foldertrack.rules.paths import join_folder_path, parse_folder_path
from foldertrack.rules.yamlnodes import NodeReader, describe, is_null, line_of

OPTION_KEYS = ("backfill", "backfill_since", "on_leave", "include_subfolders", "duplicates", "send")
SEND_KEYS = ("body", "attachments")
FILE_KEYS = ("defaults", "mailboxes")
BLOCK_KEYS = ("address", "addresses", "defaults", "folders")
FOLDER_KEYS = ("record", *OPTION_KEYS)
LOOKUP_KEYS = ("type", "name", "number", "by")
#: every key a rule file may contain, for the README check
ALL_KEYS = tuple(dict.fromkeys(FILE_KEYS + BLOCK_KEYS + FOLDER_KEYS + LOOKUP_KEYS + SEND_KEYS))

DEFAULT_OPTIONS: dict[str, Any] = {
    "backfill": True,  # True, False or a timedelta (backfill_since)
    "on_leave": "keep",
    "include_subfolders": False,
    "duplicates": "first_wins",
    "send": SendOptions(),
}

_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_PATTERN_HINT = "e.g. record: {type: account, by: name_or_number}"


def parse_document(root: Node, reader: NodeReader) -> list[FolderRule]:
    """The rules of one file; problems go to ``reader.problems``."""
    if not isinstance(root, MappingNode):
        reader.problem(root, f"a rule file must be a mapping with 'mailboxes:', not {describe(root)}")
        return []
    top = reader.mapping(root, "the rule file", FILE_KEYS) or {}
    defaults = dict(DEFAULT_OPTIONS)
    if "defaults" in top:
        defaults |= _options(top["defaults"][1], "defaults", reader, defaults)
    if "mailboxes" not in top:
        reader.missing(root, ["mailboxes"], "missing key 'mailboxes' (a list of '- address: ...' blocks)")
        return []
    blocks = reader.sequence(top["mailboxes"][1], "mailboxes")
    if blocks is not None and not blocks:
        reader.problem(top["mailboxes"][0], "mailboxes is empty")
    rules: list[FolderRule] = []
    for block in blocks or []:
        rules += _block(block, defaults, reader)
    return rules


def _block(node: Node, file_defaults: dict[str, Any], reader: NodeReader) -> list[FolderRule]:
    block = reader.mapping(node, "a mailbox block", BLOCK_KEYS)
    if block is None:
        return []
    addresses = _addresses(node, block, reader)
    options = dict(file_defaults)
    if "defaults" in block:
        options |= _options(block["defaults"][1], "defaults", reader, options)
    if "folders" not in block:
        reader.missing(node, ["folders"], "missing key 'folders' in a mailbox block")
        return []
    key_node, folders_node = block["folders"]
    folders = reader.mapping(folders_node, "folders (folder path: record)", None)
    if folders is None:
        return []
    if not folders:
        reader.problem(key_node, "folders is empty")
    rules = []
    for path_key, value in folders.values():
        rule = _folder(path_key, value, options, reader)
        if rule is not None:
            rules += [FolderRule(mailbox=a, **rule, source=reader.source) for a in addresses]
    return rules


def _addresses(node: Node, block: dict[str, tuple[ScalarNode, Node]], reader: NodeReader) -> list[str]:
    if "address" in block and "addresses" in block:
        reader.problem(block["addresses"][0], "give either 'address' or 'addresses', not both")
    nodes: list[Node] = []
    if "address" in block:
        nodes = [block["address"][1]]
    elif "addresses" in block:
        items = reader.sequence(block["addresses"][1], "addresses")
        if items is not None and not items:
            reader.problem(block["addresses"][0], "addresses is empty")
        nodes = items or []
    else:
        message = "missing key 'address' (or 'addresses') in a mailbox block"
        reader.missing(node, ["address", "addresses"], message)
    result = []
    for item in nodes:
        text = reader.string(item, "a mailbox address")
        if text is None:
            continue
        if len(text) > 254 or not _ADDRESS.match(text):
            reader.problem(item, f"mailbox address {text!r} is not an email address like user@example.com")
            continue
        result.append(text.lower())
    return list(dict.fromkeys(result))


def _options(
    node: Node, what: str, reader: NodeReader, inherited: dict[str, Any] | None = None
) -> dict[str, Any]:
    values = reader.mapping(node, what, OPTION_KEYS)
    return _option_values(values or {}, reader, inherited)


def _option_values(
    values: dict[str, tuple[ScalarNode, Node]], reader: NodeReader, inherited: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The options present in one mapping; ``backfill`` folds ``backfill_since`` into a timedelta, ``send``
    overrides the inherited send options key by key."""
    result: dict[str, Any] = {}
    if "send" in values:
        base = (inherited or {}).get("send", SendOptions())
        send = _send(values["send"][1], base, reader)
        if send is not None:
            result["send"] = send
    if "backfill" in values:
        flag = reader.boolean(values["backfill"][1], "backfill")
        if flag is not None:
            result["backfill"] = flag
    if "backfill_since" in values:
        since = _since(values["backfill_since"][1], reader)
        if since is not None and result.get("backfill") is False:
            reader.problem(values["backfill_since"][0], "backfill: false contradicts backfill_since")
        elif since is not None:
            result["backfill"] = since
    if "include_subfolders" in values:
        flag = reader.boolean(values["include_subfolders"][1], "include_subfolders")
        if flag is not None:
            result["include_subfolders"] = flag
    for key, choices in (("on_leave", ON_LEAVE), ("duplicates", DUPLICATES)):
        if key in values:
            value = reader.choice(values[key][1], key, choices)
            if value is not None:
                result[key] = value
    return result


def _send(node: Node, base: SendOptions, reader: NodeReader) -> SendOptions | None:
    """``send: {body: BOOL, attachments: BOOL}``; keys left out keep the inherited value."""
    values = reader.mapping(node, "send", SEND_KEYS)
    if values is None:
        return None
    changes: dict[str, bool] = {}
    for key in SEND_KEYS:
        if key in values:
            flag = reader.boolean(values[key][1], f"send.{key}")
            if flag is None:
                return None
            changes[key] = flag
    return replace(base, **changes)


def _since(node: Node, reader: NodeReader) -> timedelta | None:
    text = node.value if isinstance(node, ScalarNode) and not is_null(node) else None
    try:
        since = parse_duration(text) if text is not None else None
    except ValueError:
        since = None
    if since is None or since <= timedelta(0):
        reader.problem(node, f"backfill_since must be a duration like 30d or 12h, not {describe(node)}")
        return None
    return since


def _folder(
    key: ScalarNode, node: Node, inherited: dict[str, Any], reader: NodeReader
) -> dict[str, Any] | None:
    """The FolderRule fields (all but mailbox/source) of one ``PATH: ...`` entry."""
    try:
        segments, is_pattern = parse_folder_path(key.value)
    except ValueError as exc:
        reader.problem(key, str(exc))
        return None
    path = join_folder_path(segments, is_pattern)
    options = dict(inherited)
    if isinstance(node, MappingNode):
        entry = reader.mapping(node, f"folder {path!r}", FOLDER_KEYS)
        if entry is None:
            return None
        options |= _option_values(entry, reader, options)
        if "record" not in entry:
            message = f"folder {path!r}: missing key 'record' (write 'record: null' for no regarding)"
            reader.missing(node, ["record"], message, at=key)
            return None
        record_node = entry["record"][1]
    elif not isinstance(node, ScalarNode):
        reader.problem(node, f"folder {path!r} must be TYPE:ID or a mapping with 'record:', not a list")
        return None
    elif is_null(node):
        reader.problem(
            key, f"folder {path!r} has no record: give TYPE:ID, or 'record: null' for no regarding"
        )
        return None
    else:
        record_node = node
    ok, record = _record(record_node, path, is_pattern, reader)
    if not ok:
        return None
    backfill = options.pop("backfill")
    return dict(
        path=path,
        record=record,
        line=line_of(key),
        backfill=backfill is not False,
        backfill_since=backfill if isinstance(backfill, timedelta) else None,
        **options,
    )


def _record(node: Node, path: str, is_pattern: bool, reader: NodeReader) -> tuple[bool, Record]:
    """(ok, record) for ``TYPE:ID``, null, or a lookup mapping."""
    if isinstance(node, MappingNode):
        lookup = _lookup(node, path, is_pattern, reader)
        return lookup is not None, lookup
    if is_pattern:
        reader.problem(
            node, f"pattern {path!r} maps each subfolder to its own record: use a lookup, {_PATTERN_HINT}"
        )
        return False, None
    if is_null(node):
        return True, None
    text = reader.string(node, "record")
    if text is None:
        return False, None
    try:
        return True, RecordRef.parse(text)
    except ValueError as exc:
        reader.problem(node, f"{exc} (a record is TYPE:ID, a lookup {{type: TYPE, name: NAME}}, or null)")
        return False, None


def _lookup(node: MappingNode, path: str, is_pattern: bool, reader: NodeReader) -> RecordLookup | None:
    values = reader.mapping(node, "a record lookup", LOOKUP_KEYS)
    if values is None:
        return None
    before = len(reader.problems)
    kind = None
    if "type" in values:
        kind = reader.choice(values["type"][1], "record type", RECORD_TYPES)
    given = [k for k in ("name", "number") if k in values]
    by, value = None, None
    if is_pattern:
        if given:
            reader.problem(
                values[given[0]][0],
                f"pattern {path!r} looks up each subfolder's name: use 'by:', not '{given[0]}:'",
            )
        by = reader.choice(values["by"][1], "by", LOOKUP_BY) if "by" in values else "name_or_number"
    elif "by" in values:
        reader.problem(
            values["by"][0], f"'by:' is for pattern paths ending in '/*'; give name: or number: for {path!r}"
        )
    elif len(given) > 1:
        reader.problem(values["number"][0], "give either 'name' or 'number' in a lookup, not both")
    elif not given:
        reader.missing(node, ["name", "number"], "a record lookup needs 'name:' or 'number:'")
    else:
        by = given[0]
        value = reader.string(values[by][1], f"lookup {by}")
    if len(reader.problems) > before or by is None:
        return None
    return RecordLookup(type=kind, by=by, value=value)  # type: ignore[arg-type]
