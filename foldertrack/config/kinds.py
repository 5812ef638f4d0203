"""Value kinds: how one setting's TOML value is checked and converted."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from foldertrack.config.units import parse_duration, parse_size

_TOML_TYPES = {str: "string", bool: "boolean", int: "integer", float: "float", list: "array", dict: "table"}


def _shown(value: Any) -> str:
    kind = _TOML_TYPES.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if kind in {"string", "integer", "float", "boolean"} else kind


@dataclass(frozen=True)
class Kind:
    """A value type: its README name and a parser that raises ValueError with a message for the user."""

    name: str
    parse: Callable[[Any], Any]


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


def _integer(minimum: int) -> Kind:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {_shown(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, not {value}")
        return value

    return Kind(f"integer ≥ {minimum}", parse)


def _duration(positive: bool) -> Kind:
    def parse(value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value).total_seconds()
        else:
            raise ValueError(f'must be a duration like "90s", not {_shown(value)}')
        if seconds < 0 or (positive and seconds == 0):
            raise ValueError(f"must be {'more than' if positive else 'at least'} 0s, not {value!r}")
        return seconds

    return Kind("duration", parse)


def _size(value: Any) -> int:
    if not isinstance(value, (int, str)) or isinstance(value, bool):
        raise ValueError(f'must be a size like "5MiB" or a number of bytes, not {_shown(value)}')
    return parse_size(value)


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
SIZE = Kind("size", _size)
PATH = Kind("path", _path)
HTTP_URL = Kind("URL", _http_url)
DATABASE_URL = Kind("SQLAlchemy URL", _database_url)
ADDRESS = Kind("host:port", _address)
IDENTIFIER = Kind("name", _identifier)
