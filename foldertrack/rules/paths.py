"""Folder paths in rules: ``Inbox/Customers/Contoso``, relative to the top of the mailbox's folder tree.

``/`` separates folders; ``\\/`` is a slash inside a folder name, ``\\*`` a literal asterisk and ``\\\\`` a
backslash. A last segment of a bare ``*`` makes a pattern rule (one record per subfolder). Segments are
stripped of surrounding blanks; comparisons are case-insensitive, like Exchange's folder names, and blind
to Unicode normalisation (NFC both sides): ``Müller`` typed as one code point or as ``u`` + combining
diaeresis (what some phones and macOS write) is the same folder.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def name_key(name: str) -> str:
    """How folder names compare: NFC, then case-folded (and NFC again: folding can denormalise)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def same_path(a: str, b: str) -> bool:
    return name_key(a) == name_key(b)


def parse_folder_path(text: str) -> tuple[tuple[str, ...], bool]:
    """(segments, is_pattern) of a rule path; raises ValueError with a message fit for a rule problem."""
    segments: list[str] = []
    wild: list[bool] = []  # whether the segment has an unescaped '*'
    current: list[str] = []
    star = False
    chars = iter(unicodedata.normalize("NFC", text).strip().lstrip("/"))
    for char in chars:
        if char == "\\":
            nxt = next(chars, None)
            if nxt is None:
                raise ValueError(f"folder path {text!r} ends with a lone backslash")
            current.append(nxt)
        elif char == "/":
            segments.append("".join(current).strip())
            wild.append(star)
            current, star = [], False
        else:
            current.append(char)
            star = star or char == "*"
    if current or not segments:
        segments.append("".join(current).strip())
        wild.append(star)
    if segments == [""]:
        raise ValueError("folder path is empty")
    if "" in segments:
        raise ValueError(f"folder path {text!r} has an empty folder name")
    is_pattern = segments[-1] == "*" and wild[-1]
    for index, has_star in enumerate(wild):
        if has_star and not (is_pattern and index == len(segments) - 1):
            raise ValueError(
                f"folder path {text!r}: '*' is only a pattern as the whole last folder name "
                "(write '\\*' for a literal asterisk)"
            )
    if is_pattern and len(segments) == 1:
        raise ValueError("a pattern needs a parent folder, e.g. 'Inbox/Customers/*'")
    return tuple(segments[:-1] if is_pattern else segments), is_pattern


def escape_segment(name: str) -> str:
    return name.replace("\\", "\\\\").replace("/", "\\/").replace("*", "\\*")


def join_folder_path(segments: Sequence[str], is_pattern: bool = False) -> str:
    """The normalised path string of ``segments`` (escaped), with ``/*`` for a pattern."""
    path = "/".join(escape_segment(s) for s in segments)
    return f"{path}/*" if is_pattern else path


def normalise_folder_path(text: str) -> str:
    return join_folder_path(*parse_folder_path(text))


def fold(segments: Sequence[str]) -> tuple[str, ...]:
    """Case-insensitive comparison key of a path."""
    return tuple(name_key(s) for s in segments)
