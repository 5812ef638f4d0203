"""OData query options and ``Prefer`` headers as Graph reads them: ``$select``, ``$top``, ``$skip``,
``$expand=attachments($select=…)``, ``odata.maxpagesize``, ``IdType="ImmutableId"``,
``outlook.body-content-type``.

https://learn.microsoft.com/graph/query-parameters
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from foldertrack.simulator.graph.errors import GraphError, bad_request

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
    select = top = expand = expand_filter = None
    skip = 0
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
    return Query(select, top, skip, expand, expand_filter or None)


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
