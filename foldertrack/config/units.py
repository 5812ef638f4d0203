"""Durations (``90s``, ``1h30m``) and sizes (``5MiB``) as written in the configuration and rule files."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w)\s*")
_DURATION_HINT = "use e.g. 90s, 15m, 1h30m, 250ms, 2d"


def parse_duration(text: str) -> timedelta:
    """Parse ``"90s"``, ``"15m"``, ``"1h30m"``, ``"250ms"``, ``"2d"``, ``"1w"``; raises ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not a duration ({_DURATION_HINT})")
    total, pos, seen = 0.0, 0, set()
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None or match.group(2) in seen:
            raise ValueError(f"{text!r} is not a duration ({_DURATION_HINT})")
        seen.add(match.group(2))
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return timedelta(seconds=total)


def format_duration(value: timedelta | float) -> str:
    """The shortest ``parse_duration`` spelling of a duration (``5400`` → ``"1h30m"``)."""
    ms = round((value.total_seconds() if isinstance(value, timedelta) else value) * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6}
_SIZE_UNITS |= {"mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30}


def parse_size(value: int | str) -> int:
    """Bytes from an int or ``"5MB"`` (10⁶) / ``"5MiB"`` (2²⁰) / ``"512kB"``; raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative, not {value}")
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (use e.g. 5MiB, 5MB, 512kB or a number of bytes)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
