"""OData query options and ``Prefer`` headers as Graph reads them: ``$select``, ``$top``, ``$skip``,
``$expand=attachments($select=…)``, ``$count``, ``$orderby``, a message list's ``$filter``,
``odata.maxpagesize``, ``IdType="ImmutableId"``, ``outlook.body-content-type``.

A message ``$filter`` is clauses joined by ``and``: ``<property> eq|ne|gt|ge|lt|le <literal>`` on the date
properties, ``subject`` and ``internetMessageId``, and ``contains``/``startswith`` on those two; strings
compare case-insensitively, as Exchange's restrictions do. With ``$orderby`` too, Graph refuses (400
``InefficientFilter``) unless the ordered properties are the first ones filtered, in the same order
(https://devblogs.microsoft.com/microsoft365dev/update-to-filtering-and-sorting-rest-api/). Filters Graph
accepts but the simulator does not evaluate (``or``, ``not``, other properties) are a 400 saying so.

https://learn.microsoft.com/graph/query-parameters
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foldertrack.simulator.graph.errors import GraphError, bad_request
from foldertrack.simulator.model import Item

_EXPAND = re.compile(r"^\s*(\w+)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_EXPAND_OPTION = re.compile(r"^\s*(\$\w+)\s*=(.*)$", re.DOTALL)
_PREFER = re.compile(r'\s*([\w.-]+)\s*(?:=\s*"?([^",;]*)"?)?\s*')


@dataclass(frozen=True)
class Query:
    select: tuple[str, ...] | None = None
    top: int | None = None
    skip: int = 0
    expand: dict[str, tuple[str, ...] | None] | None = None
    #: ``$expand=name($filter=…)``: the filter text per expanded navigation property
    expand_filter: dict[str, str] | None = None
    filter: str | None = None
    #: ``$orderby``: ``(property as written, descending)`` in order
    orderby: tuple[tuple[str, bool], ...] | None = None
    count: bool = False


@dataclass(frozen=True)
class Preferences:
    max_page_size: int | None = None
    immutable_ids: bool = False
    body_type: str | None = None  # "text" or "html"


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _int(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"Invalid value '{text}' for query option '{name}'.") from None
    if value < minimum:
        raise bad_request(f"Invalid value '{text}' for query option '{name}'.")
    return value


def parse_query(params: dict[str, str], allowed: frozenset[str]) -> Query:
    """Read the options in ``params`` (decoded); an option not in ``allowed`` is a 400 like Graph's."""
    select = top = expand = expand_filter = filter_text = orderby = None
    skip, count = 0, False
    for key, value in params.items():
        name = key.lower()
        if not name.startswith("$"):
            continue
        if name not in allowed:
            raise GraphError(400, "BadRequest", f"The query parameter '{key}' is not supported.")
        if name == "$select":
            select = _names(value)
        elif name == "$top":
            top = _int(key, value, 1)
        elif name == "$skip":
            skip = _int(key, value, 0)
        elif name == "$expand":
            expand, expand_filter = {}, {}
            for part in _split_top_level(value):
                match = _EXPAND.match(part)
                if match is None:
                    raise bad_request(f"Invalid $expand '{part}'.")
                navigation = match.group(1).lower()
                options = _expand_options(part, match.group(2) or "")
                expand[navigation] = _names(options["$select"]) if "$select" in options else None
                if "$filter" in options:
                    expand_filter[navigation] = options["$filter"].strip()
        elif name == "$filter":
            if not value.strip():
                raise bad_request("Invalid filter clause")
            filter_text = value.strip()
        elif name == "$orderby":
            orderby = _orderby(value)
        elif name == "$count":
            if value.strip().lower() not in ("true", "false"):
                raise bad_request(f"Invalid value '{value}' for query option '{key}'.")
            count = value.strip().lower() == "true"
    return Query(select, top, skip, expand, expand_filter or None, filter_text, orderby, count)


def _orderby(text: str) -> tuple[tuple[str, bool], ...]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise bad_request(f"Invalid $orderby '{text}'.")
        out.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return tuple(out)


def _expand_options(part: str, text: str) -> dict[str, str]:
    """The nested options of one ``$expand`` item (``$select=a,b;$filter=id eq 'x'``)."""
    options: dict[str, str] = {}
    for option in (o for o in text.split(";") if o.strip()):
        match = _EXPAND_OPTION.match(option)
        if match is None or match.group(1).lower() not in ("$select", "$filter"):
            raise bad_request(f"Invalid $expand '{part}'.")
        options[match.group(1).lower()] = match.group(2)
    return options


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    if current:
        parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_prefer(values: list[str]) -> Preferences:
    max_page = None
    immutable = False
    body_type = None
    for header in values:
        for match in _PREFER.finditer(header):
            name, value = match.group(1).lower(), (match.group(2) or "").strip()
            if name == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
                max_page = int(value)
            elif name == "idtype":
                immutable = value.lower() == "immutableid"
            elif name == "outlook.body-content-type" and value.lower() in ("text", "html"):
                body_type = value.lower()
    return Preferences(max_page, immutable, body_type)


# -- a message list's $filter and $orderby ---------------------------------------------------------------

_FILTER_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<date>\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?(?![\w:]))"
    r"|(?P<word>[A-Za-z_$][\w/$]*)|(?P<punct>[(),])|(?P<other>\S+))"
)
_DATES: dict[str, Callable[[Item], dt.datetime | None]] = {
    "receivedDateTime": lambda item: item.received,
    "sentDateTime": lambda item: item.mail.sent_at or item.created,
    "createdDateTime": lambda item: item.created,
    "lastModifiedDateTime": lambda item: item.modified,
}
_STRINGS: dict[str, Callable[[Item], str | None]] = {
    "subject": lambda item: item.mail.subject,
    "internetMessageId": lambda item: item.mail.message_id,
}
_OPERATORS = {
    "eq": ("Equal", lambda a, b: a == b),
    "ne": ("NotEqual", lambda a, b: a != b),
    "gt": ("GreaterThan", lambda a, b: a > b),
    "ge": ("GreaterThanOrEqual", lambda a, b: a >= b),
    "lt": ("LessThan", lambda a, b: a < b),
    "le": ("LessThanOrEqual", lambda a, b: a <= b),
}
_FUNCTIONS = {"contains": str.__contains__, "startswith": str.startswith}
SORTABLE = (*_DATES, "subject")


@dataclass(frozen=True)
class MessageFilter:
    """A parsed message ``$filter``: the canonical property of each clause, in order, and the test."""

    properties: tuple[str, ...]
    tests: tuple[Callable[[Item], bool], ...]

    def matches(self, item: Item) -> bool:
        return all(test(item) for test in self.tests)


def _simulator_cannot(what: str) -> GraphError:
    return bad_request(f"The simulator does not evaluate {what} in a message $filter.")


def _unknown_property(name: str) -> GraphError:
    return GraphError(
        400,
        "RequestBroker--ParseUri",
        f"Could not find a property named '{name}' on type 'microsoft.graph.message'.",
    )


def _property(name: str, known: dict[str, str]) -> str:
    canonical = known.get(name.split("/", 1)[0].lower())
    if canonical is None:
        raise _unknown_property(name)
    if "/" in name or (canonical not in _DATES and canonical not in _STRINGS):
        raise _simulator_cannot(f"the property '{name}'")
    return canonical


def _second(value: dt.datetime) -> dt.datetime:
    """Graph shows times to the second: compare what the client saw."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return value.replace(microsecond=0)


def _date_literal(text: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("Invalid filter clause") from None
    return _second(parsed)


def _unquote(literal: str) -> str:
    """An OData string literal's text (``'it''s'`` → ``it's``), folded: Exchange compares ignoring case."""
    return literal[1:-1].replace("''", "'").casefold()


def _date_test(
    date_of: Callable[[Item], dt.datetime | None], compare: Callable[[Any, Any], bool], wanted: dt.datetime
) -> Callable[[Item], bool]:
    def test(item: Item) -> bool:
        value = date_of(item)
        return value is not None and compare(_second(value), wanted)

    return test


_FUNCTION_CALL = ["word", "punct", "word", "punct", "str", "punct"]  # name ( property , 'text' )


def _clause(tokens: list[tuple[str, str]], known: dict[str, str]) -> tuple[str, Callable[[Item], bool]]:
    """One comparison or function call: its property and its test."""
    kinds = [kind for kind, _ in tokens]
    if kinds in (["word", "word", "str"], ["word", "word", "date"]):
        (_, name), (_, op), (kind, literal) = tokens
        prop, operator = _property(name, known), _OPERATORS.get(op.lower())
        if operator is None:
            raise bad_request("Invalid filter clause")
        compare = operator[1]
        if prop in _DATES and kind == "date":
            return prop, _date_test(_DATES[prop], compare, _date_literal(literal))
        if prop in _STRINGS and kind == "str":
            text, string_of = _unquote(literal), _STRINGS[prop]
            return prop, lambda item: compare((string_of(item) or "").casefold(), text)
        types = (
            "Edm.DateTimeOffset" if prop in _DATES else "Edm.String",
            f"Edm.{'String' if kind == 'str' else 'DateTimeOffset'}",
        )
        raise bad_request(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{types[0]}' and '{types[1]}' for operator kind '{operator[0]}'."
        )
    if kinds == _FUNCTION_CALL and "".join(v for _, v in tokens[1::2]) == "(,)":
        function = _FUNCTIONS.get(tokens[0][1].lower())
        if function is None:
            raise _simulator_cannot(f"the function '{tokens[0][1]}'")
        prop = _property(tokens[2][1], known)
        if prop not in _STRINGS:
            raise bad_request(
                f"No function signature for the function with name '{tokens[0][1]}' matches the specified arguments."
            )
        text, string_of = _unquote(tokens[4][1]), _STRINGS[prop]
        return prop, lambda item: function((string_of(item) or "").casefold(), text)
    raise bad_request("Invalid filter clause")


def message_filter(text: str, known: dict[str, str]) -> MessageFilter:
    """Parse ``$filter`` for a message list (``known``: the message's property names, lower-cased)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while text[pos:].strip():
        match = _FILTER_TOKEN.match(text, pos)
        if match is None or match.lastgroup == "other":
            raise bad_request("Invalid filter clause")
        tokens.append((match.lastgroup or "", match.group(match.lastgroup or 0)))
        pos = match.end()
    clauses: list[list[tuple[str, str]]] = [[]]
    for kind, value in tokens:
        if kind == "word" and value.lower() == "and":
            clauses.append([])
        elif kind == "word" and value.lower() in ("or", "not"):
            raise _simulator_cannot(f"'{value}'")
        else:
            clauses[-1].append((kind, value))
    parsed = [_clause(clause, known) for clause in clauses]
    return MessageFilter(tuple(p for p, _ in parsed), tuple(t for _, t in parsed))


def order_messages(
    items: list[Item],
    orderby: tuple[tuple[str, bool], ...] | None,
    known: dict[str, str],
    found: MessageFilter | None,
) -> list[Any]:
    """``items`` in ``$orderby`` order (newest received first without one). With a ``$filter`` too, the
    ordered properties must be the first ones filtered, in the same order: else 400 ``InefficientFilter``."""
    if not orderby:
        return sorted(items, key=lambda i: i.received, reverse=True)
    keys = []
    for name, descending in orderby:
        prop = known.get(name.lower())
        if prop is None:
            raise _unknown_property(name)
        if prop not in SORTABLE:
            raise bad_request(f"The simulator does not order messages by '{name}'.")
        keys.append((prop, descending))
    if found is not None and list(found.properties[: len(keys)]) != [p for p, _ in keys]:
        raise GraphError(
            400, "InefficientFilter", "The restriction or sort order is too complex for this operation."
        )
    out = list(items)
    for prop, descending in reversed(keys):  # stable sorts, last key first
        if prop in _DATES:
            earliest = dt.datetime.min.replace(tzinfo=dt.UTC)
            out.sort(key=lambda i, p=prop: _DATES[p](i) or earliest, reverse=descending)
        else:
            out.sort(key=lambda i: (i.mail.subject or "").casefold(), reverse=descending)
    return out
