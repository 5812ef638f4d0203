"""Value kinds: how one setting's TOML value is checked and converted."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from foldertrack.config.units import format_duration, format_size, parse_duration, parse_size

#: Upper bounds for settings declared without one: every number has a range (nothing runs with 10⁹ threads).
DEFAULT_MAX_INTEGER = 1_000_000
DEFAULT_MAX_SECONDS = 366 * 86400.0

_TOML_TYPES = {str: "string", bool: "boolean", int: "integer", float: "float", list: "array", dict: "table"}


def _shown(value: Any) -> str:
    kind = _TOML_TYPES.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if kind in {"string", "integer", "float", "boolean"} else kind


@dataclass(frozen=True)
class Kind:
    """A value type: its README name and a parser that raises ValueError with a message for the user."""

    name: str
    parse: Callable[[Any], Any]
    unit: str = ""  # "duration" or "size": how ``config check`` writes the value back


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_shown(value)}")
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_shown(value)}")
    return value


def _integer(minimum: int, maximum: int = DEFAULT_MAX_INTEGER) -> Kind:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {_shown(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, not {value}")
        if value > maximum:
            raise ValueError(f"must be at most {maximum:,}, not {value:,}")
        return value

    return Kind(f"integer {minimum} to {maximum:,}", parse)


def _duration(positive: bool, minimum: float | None = None, maximum: float = DEFAULT_MAX_SECONDS) -> Kind:
    """A duration in seconds; ``nan`` and ``inf`` (valid TOML floats) are refused like any out-of-range value:
    ``debounce = nan`` would track nothing and ``poll_interval = inf`` never poll."""
    low = minimum if minimum is not None else 0.0
    high = format_duration(maximum)
    if positive and not low:
        span, allowed = f"> 0s, ≤ {high}", f"more than 0s and at most {high}"
    else:
        span, allowed = f"{format_duration(low)} to {high}", f"between {format_duration(low)} and {high}"

    def parse(value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value).total_seconds()
        else:
            raise ValueError(f'must be a duration like "90s", not {_shown(value)}')
        if not math.isfinite(seconds):
            raise ValueError(f"must be a finite duration {allowed}, not {value!r}")
        if seconds < low or (positive and seconds <= 0) or seconds > maximum:
            raise ValueError(f"must be {allowed}, not {value!r}")
        return seconds

    return Kind(f"duration {span}", parse, "duration")


def _size_between(minimum: int = 0, maximum: int = 2**40) -> Kind:
    def parse(value: Any) -> int:
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise ValueError(f'must be a size like "5MiB" or a number of bytes, not {_shown(value)}')
        size = parse_size(value)
        if not minimum <= size <= maximum:
            raise ValueError(
                f"must be between {format_size(minimum)} and {format_size(maximum)}, not {value!r}"
            )
        return size

    return Kind(f"size {format_size(minimum)} to {format_size(maximum)}", parse, "size")


def _size(value: Any) -> int:
    return SIZE.parse(value)


def _choice(*choices: str) -> Kind:
    def parse(value: Any) -> str:
        text = _string(value)
        if text not in choices:
            hint = difflib.get_close_matches(text, choices, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"must be one of {', '.join(choices)}, not {text!r}{extra}")
        return text

    return Kind(" \\| ".join(choices) if len(choices) <= 3 else "EWS version", parse)


def _http_url(value: Any) -> str:
    text = _string(value)
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, not {text!r}")
    return text


def _secure_url(value: Any) -> str:
    """An https URL; plain http only to a loopback host (a bearer token or NTLM must not cross a network
    in clear text)."""
    text = _http_url(value)
    parts = urlsplit(text)
    if parts.scheme == "http" and parts.hostname not in {"localhost", "127.0.0.1", "::1"}:
        raise ValueError(f"must be an https URL (credentials are sent to it), not {text!r}")
    return text


def _database_url(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^[a-z][a-z0-9]*(\+[a-z0-9_]+)?://", text):
        raise ValueError("must be a SQLAlchemy URL like sqlite:///path or postgresql+psycopg://host/db")
    return text


def _path(value: Any) -> Path:
    return Path(_string(value)).expanduser()


def _address(value: Any) -> str:
    text = _string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'must be HOST:PORT like "127.0.0.1:9464", not {text!r}')
    return text


def _identifier(value: Any) -> str:
    text = _string(value)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        raise ValueError(f'must be a plug-in name like "sql", not {text!r}')
    return text


STRING = Kind("string", _string)
BOOLEAN = Kind("boolean", _boolean)
SIZE = _size_between()
PATH = Kind("path", _path)
HTTP_URL = Kind("URL", _http_url)
HTTPS_URL = Kind("https URL", _secure_url)
DATABASE_URL = Kind("SQLAlchemy URL", _database_url)
ADDRESS = Kind("host:port", _address)
IDENTIFIER = Kind("name", _identifier)


# -- Dataverse (H3) --


def _integer_range(minimum: int, maximum: int) -> Kind:
    return _integer(minimum, maximum)  # every integer has a range now (H5): one spelling of it


def _entity_sets(value: Any) -> tuple[tuple[str, str], ...]:
    """``{logical_name = "entity_set_name"}`` (where the Web API keeps a custom table's rows), as sorted
    pairs so the frozen configuration stays hashable."""
    if not isinstance(value, dict):
        raise ValueError(f'must be a table like {{ new_project = "new_projects" }}, not {_shown(value)}')
    result: dict[str, str] = {}
    for logical, entity_set in value.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", str(logical)):
            raise ValueError(f"{logical!r} is not a table's logical name (lower case, like new_project)")
        if not isinstance(entity_set, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", entity_set):
            raise ValueError(f"{logical} = {entity_set!r} is not an entity set name (like new_projects)")
        result[str(logical)] = entity_set
    return tuple(sorted(result.items()))


ENTITY_SETS = Kind("table", _entity_sets)
