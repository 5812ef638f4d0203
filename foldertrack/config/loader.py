"""Reading and validating the TOML file against the settings table; every problem reported at once."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foldertrack.config.kinds import _shown
from foldertrack.config.model import SECTION_CLASSES, Config
from foldertrack.config.secrets import SECRETS, resolve_secret
from foldertrack.config.settings import SECTIONS, SETTINGS, SETTINGS_BY_NAME
from foldertrack.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/foldertrack/foldertrack.toml")
CONFIG_ENV = "FOLDERTRACK_CONFIG"
DATABASE_URL_ENV = "FOLDERTRACK_DATABASE_URL"  # overrides database.url (for every command)


def default_database_url(env: Mapping[str, str]) -> str:
    """systemd's ``StateDirectory`` when running as a service, else the XDG state directory."""
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        return f"sqlite:///{Path(state_dir) / 'foldertrack.db'}"
    xdg = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return f"sqlite:///{Path(xdg) / 'foldertrack' / 'foldertrack.db'}"


def sqlite_relative_to(url: str, base: Path) -> str:
    """A ``sqlite:///relative.db`` URL from the file made relative to ``base`` (the file's directory),
    like every other relative path in the configuration; other URLs unchanged."""
    match = re.match(r"^(sqlite(?:\+\w+)?:///)([^/?][^?]*)(\?.*)?$", url)
    if not match or match.group(2) == ":memory:" or match.group(2).startswith("file:"):
        return url
    path = Path(match.group(2)).expanduser()
    return url if path.is_absolute() else f"{match.group(1)}{base / path}{match.group(3) or ''}"


def locate_config(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """(file, explicit): ``--config``, else ``$FOLDERTRACK_CONFIG``, else the default path."""
    if path:
        return Path(path), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    required: bool = True,
) -> Config:
    """Read and validate the configuration; raises ConfigError naming every bad key.

    A missing file is an error when it was named (``path`` or ``$FOLDERTRACK_CONFIG``) or ``required``;
    otherwise (``required=False``, default path absent) the defaults are used.
    """
    env = os.environ if env is None else env
    file, explicit = locate_config(path, env)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit or required:
            how = "" if explicit else f" (use --config or ${CONFIG_ENV})"
            raise ConfigError(f"{file}: configuration file not found{how}") from None
        return parse_config({}, env=env, source=None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{file}: cannot read configuration ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    return parse_config(data, env=env, source=file, text=text)


def _key_lines(text: str) -> dict[str, int]:
    """Best-effort line numbers of ``[section]`` headers and ``section.key`` (tomllib gives none)."""
    lines: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$", line)
        if header:
            section = header.group(1)
            lines.setdefault(section, number)
            continue
        key = re.match(r"^\s*\"?([A-Za-z0-9_-]+)\"?\s*=", line)
        if key:
            lines.setdefault(f"{section}.{key.group(1)}" if section else key.group(1), number)
    return lines


def _hint(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _key_hint(section: str, key: str) -> str:
    """A near miss in the same section, else the same (or a similar) key in another section."""
    in_section = [s.name for s in SETTINGS if s.section == section]
    match = difflib.get_close_matches(f"{section}.{key}", in_section, n=1, cutoff=0.75)
    if not match:
        by_key = {s.key: s.name for s in reversed(SETTINGS)}  # a key in several sections: the first one
        near = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
        match = [by_key[near[0]]] if near else []
    return f" (did you mean {match[0]}?)" if match else ""


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
    text: str = "",
) -> Config:
    """Validate parsed TOML against :data:`SETTINGS`; every problem is reported, one per line."""
    env = os.environ if env is None else env
    lines = _key_lines(text)
    problems: list[str] = []

    def report(where: str, message: str) -> None:
        prefix = (
            f"{source}:{lines[where]}: " if source and where in lines else f"{source}: " if source else ""
        )
        problems.append(prefix + message)

    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for section, table in data.items():
        if section not in SECTIONS and isinstance(table, dict):
            report(section, f"unknown section {section!r}{_hint(section, list(SECTIONS))}")
            continue
        if section not in SECTIONS:  # a key outside any section
            report(section, f"unknown key {section!r}{_key_hint('', section)}")
            continue
        if not isinstance(table, dict):
            report(section, f"[{section}] must be a table, not {_shown(table)}")
            continue
        for key, raw in table.items():
            setting = SETTINGS_BY_NAME.get(f"{section}.{key}")
            if setting is None:
                report(f"{section}.{key}", f"unknown key {section}.{key}{_key_hint(section, key)}")
                continue
            try:
                values[section][key] = setting.kind.parse(raw)
            except ValueError as exc:
                report(setting.name, f"{setting.name}: {exc}")
    if problems:
        raise ConfigError("\n".join(problems))
    return _build(values, env, source)


def _build(values: dict[str, dict[str, Any]], env: Mapping[str, str], source: Path | None) -> Config:
    explicit_values = {name: set(keys) for name, keys in values.items()}
    base = source.parent if source else DEFAULT_CONFIG_PATH.parent
    for setting in SETTINGS:
        section = values[setting.section]
        if setting.key not in section:
            section[setting.key] = None if setting.default is None else setting.kind.parse(setting.default)
        if isinstance(section[setting.key], Path):
            section[setting.key] = base / section[setting.key]
    if values["database"]["url"] is not None:
        values["database"]["url"] = sqlite_relative_to(values["database"]["url"], base)
    if env.get(DATABASE_URL_ENV):  # every command honours it, `run` included (as-is: relative to the cwd)
        values["database"]["url"] = env[DATABASE_URL_ENV]
    if values["database"]["url"] is None:
        values["database"]["url"] = default_database_url(env)
    notes = []
    for spec in SECRETS:
        secret, note = resolve_secret(spec, values[spec.section][spec.file_key], env)
        values[spec.section][spec.attr] = secret
        if note:
            notes.append((spec.attr, note))
    values["exchange"]["secret_notes"] = tuple(notes)
    sections = {name: SECTION_CLASSES[name](**values[name]) for name in SECTIONS}
    explicit = frozenset(f"{name}.{key}" for name, keys in explicit_values.items() for key in keys)
    return Config(**sections, source=source, explicit_keys=explicit)
