"""OData query options as Dataverse evaluates them: ``$filter`` (eq ne gt ge lt le, and or not, parentheses,
contains/startswith/endswith, null), ``$select``, ``$expand`` (with a nested ``$select``), ``Prefer``.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows
String comparisons are case-insensitive, as in Dataverse's SQL collation.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foldertrack.simulator.dataverse import errors
from foldertrack.simulator.dataverse.metadata import Table

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12})|(?P<date>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),]))"
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
FUNCTIONS = {"contains", "startswith", "endswith"}


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    left, right = _norm(left), _norm(right)
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        return {"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op]
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str, table: Table, value_of: Callable[[dict[str, Any], str], Any]):
        self.text, self.table, self.value_of = text, table, value_of
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise errors.query_syntax(f"Syntax error at position {pos} in '{text}'.")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None or (expected is not None and token[1].lower() != expected):
            where = token[2] if token else len(self.text)
            raise errors.query_syntax(f"Syntax error at position {where} in '{self.text}'.")
        self.i += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            self.take("<end>")
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while (t := self.peek()) is not None and t[1].lower() == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while (t := self.peek()) is not None and t[1].lower() == "and":
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def not_expr(self) -> Predicate:
        token = self.peek()
        if token is not None and token[1].lower() == "not":
            self.take()
            inner = self.not_expr()
            return lambda row: not inner(row)
        return self.primary()

    def primary(self) -> Predicate:
        kind, text, _ = self.take()
        if text == "(":
            inner = self.or_expr()
            self.take(")")
            return inner
        if kind != "name":
            raise errors.query_syntax(f"Syntax error: unexpected '{text}' in '{self.text}'.")
        if text.lower() in FUNCTIONS and (p := self.peek()) is not None and p[1] == "(":
            self.take("(")
            name = self.property()
            self.take(",")
            needle = self.literal()
            self.take(")")
            func = text.lower()
            if not isinstance(needle, str):
                raise errors.query_syntax(f"The function '{func}' needs a string literal in '{self.text}'.")

            def test(row: dict[str, Any]) -> bool:
                value = self.value_of(row, name)
                if not isinstance(value, str):
                    return False
                hay, pin = value.lower(), needle.lower()
                return {
                    "contains": pin in hay,
                    "startswith": hay.startswith(pin),
                    "endswith": hay.endswith(pin),
                }[func]

            return test
        self.i -= 1
        name = self.property()
        op = self.take()[1].lower()
        if op not in COMPARISONS:
            raise errors.query_syntax(f"Syntax error: unknown operator '{op}' in '{self.text}'.")
        value = self.literal()
        return lambda row: _compare(op, self.value_of(row, name), value)

    def property(self) -> str:
        kind, text, _ = self.take()
        name = text.lower()
        if kind != "name" or not known_property(self.table, name):
            raise errors.query_property(text, self.table.logical)
        return name

    def literal(self) -> Any:
        kind, text, _ = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "guid":
            return str(uuid.UUID(text))
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "date":
            return parse_datetime(text)
        if kind == "name" and text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text.lower()]
        raise errors.query_syntax(f"Syntax error: '{text}' is not a literal in '{self.text}'.")


def parse_datetime(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time as an aware datetime (UTC when no offset is given)."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def known_property(table: Table, name: str) -> bool:
    """A name usable in ``$select``/``$filter``: a column, or ``_<lookup>_value`` for a lookup column."""
    if name.startswith("_") and name.endswith("_value"):
        column = table.columns.get(name[1:-6])
        return column is not None and column.type == "lookup"
    column = table.columns.get(name)
    return column is not None and column.type != "lookup"


def parse_filter(text: str, table: Table, value_of: Callable[[dict[str, Any], str], Any]) -> Predicate:
    return _Parser(text, table, value_of).parse()


def parse_select(text: str | None, table: Table) -> list[str] | None:
    if not text:
        return None
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    for name in names:
        if not known_property(table, name):
            raise errors.query_property(name, table.logical)
    return names


@dataclass(frozen=True)
class Expand:
    navigation: str
    select: str | None


def parse_expand(text: str | None, table: Table) -> list[Expand]:
    if not text:
        return []
    out, depth, start = [], 0, 0
    parts: list[str] = []
    for i, ch in enumerate(text + ","):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    for part in filter(None, parts):
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?", part)
        if match is None:
            raise errors.query_syntax(f"Syntax error in $expand '{text}'.")
        name, options = match.group(1).lower(), match.group(2) or ""
        if name not in table.collections:
            raise errors.query_property(name, table.logical)
        select = None
        for option in filter(None, (o.strip() for o in options.split(";"))):
            key, _, value = option.partition("=")
            if key.strip().lower() != "$select":
                raise errors.query_syntax(f"The query option '{key}' is not supported in $expand here.")
            select = value
        out.append(Expand(name, select))
    return out


@dataclass
class Prefer:
    representation: bool = False
    max_page_size: int | None = None
    track_changes: bool = False
    annotations: str | None = None


def parse_prefer(values: list[str]) -> Prefer:
    prefer = Prefer()
    parts = (p.strip() for v in values for p in re.findall(r'(?:[^,"]|"[^"]*")+', v))
    for part in parts:
        key, _, value = part.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key == "return" and value.lower() == "representation":
            prefer.representation = True
        elif key == "odata.maxpagesize" and value.isdigit():
            prefer.max_page_size = max(1, int(value))
        elif key == "odata.track-changes":
            prefer.track_changes = True
        elif key == "odata.include-annotations":
            prefer.annotations = value
    return prefer
