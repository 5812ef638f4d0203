"""Configuration: one TOML file, every setting declared once in :data:`SETTINGS`.

The validator, ``foldertrack config check`` and the README's configuration table are all derived from
that table, so a setting cannot exist in one and be missing from another. Loading is a pure function of
the file's text and an environment mapping; secrets are wrapped in :class:`Secret` so they cannot leak
through ``repr``, logs or error messages.
"""

from __future__ import annotations

import difflib
import hmac
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from foldertrack.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/foldertrack/foldertrack.toml")
CONFIG_ENV = "FOLDERTRACK_CONFIG"

#: EWS schema versions (``RequestServerVersion``), the api_version names exchangelib knows.
EWS_VERSIONS: tuple[str, ...] = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2015_SP1",
    "Exchange2016",
)

# --------------------------------------------------------------------------- durations and sizes

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


# --------------------------------------------------------------------------- secrets


class Secret:
    """A password or client secret: masked in ``str``/``repr``/f-strings; ``reveal()`` at the point of use.

    ``source`` says where it came from (``"file /run/…"``, ``"$FOLDERTRACK_EXCHANGE_PASSWORD"``), never what.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SecretSpec:
    """Where a secret is looked for, in order: a file named by a setting, an env var, a systemd credential."""

    section: str
    attr: str  # the dataclass field holding the resolved Secret
    file_key: str  # the setting naming a file that holds it
    env: str
    credential: str  # file name under $CREDENTIALS_DIRECTORY

    def describe(self) -> str:
        return (
            f"{self.section}.{self.file_key}, else ${self.env}, else $CREDENTIALS_DIRECTORY/{self.credential}"
        )


SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec("exchange", "password", "password_file", "FOLDERTRACK_EXCHANGE_PASSWORD", "exchange-password"),
    SecretSpec(
        "exchange",
        "oauth2_client_secret",
        "oauth2_client_secret_file",
        "FOLDERTRACK_EXCHANGE_CLIENT_SECRET",
        "exchange-client-secret",
    ),
)


def _read_secret_file(path: Path) -> str:
    text = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not text:
        raise ValueError("is empty")
    return text


def resolve_secret(spec: SecretSpec, file: Path | None, env: Mapping[str, str]) -> tuple[Secret | None, str]:
    """(secret, note): the note explains a missing secret. A configured file that is unreadable is not
    silently replaced by the next source."""
    if file is not None:
        try:
            return Secret(_read_secret_file(file), f"file {file}"), ""
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            return None, f"{spec.section}.{spec.file_key} {file}: cannot read secret ({reason})"
    if env.get(spec.env):
        return Secret(env[spec.env], f"${spec.env}"), ""
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / spec.credential
        if path.exists():
            try:
                return Secret(_read_secret_file(path), f"credential {spec.credential}"), ""
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                return None, f"{path}: cannot read secret ({reason})"
    return None, f"not set (looked in {spec.describe()})"


# --------------------------------------------------------------------------- value kinds


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


# --------------------------------------------------------------------------- the settings table


@dataclass(frozen=True)
class Setting:
    """One configuration key. ``default`` is written as in the TOML file (``None``: unset, or computed and
    described by ``default_doc``). ``secret`` marks a setting whose value is, or leads to, a secret."""

    section: str
    key: str
    kind: Kind
    default: Any
    help: str
    secret: bool = False
    default_doc: str | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


SETTINGS: tuple[Setting, ...] = (
    Setting("exchange", "endpoint", HTTP_URL, None, "EWS URL (no autodiscover). Needed to connect."),
    Setting("exchange", "auth", _choice("basic", "ntlm", "oauth2"), "basic", "How to authenticate."),
    Setting("exchange", "username", STRING, None, "Service account (basic, ntlm)."),
    Setting(
        "exchange",
        "password_file",
        PATH,
        None,
        "File holding the password; else `$FOLDERTRACK_EXCHANGE_PASSWORD`, "
        "else `$CREDENTIALS_DIRECTORY/exchange-password`.",
        secret=True,
    ),
    Setting(
        "exchange",
        "access",
        _choice("impersonation", "delegate"),
        "impersonation",
        "How the service account opens the watched mailboxes.",
    ),
    Setting("exchange", "verify_tls", BOOLEAN, True, "Verify the server's TLS certificate."),
    Setting(
        "exchange",
        "version",
        _choice(*EWS_VERSIONS),
        "Exchange2016",
        f"EWS schema version to request: {', '.join(EWS_VERSIONS)}.",
    ),
    Setting(
        "exchange",
        "max_connections",
        _integer(0),
        0,
        "HTTP connections to Exchange; 0 sizes the pool for streams + workers.",
    ),
    Setting("exchange", "oauth2_tenant_id", STRING, None, "Entra ID tenant (oauth2)."),
    Setting("exchange", "oauth2_client_id", STRING, None, "App registration's client id (oauth2)."),
    Setting(
        "exchange",
        "oauth2_client_secret_file",
        PATH,
        None,
        "File holding the client secret (oauth2); else `$FOLDERTRACK_EXCHANGE_CLIENT_SECRET`, "
        "else `$CREDENTIALS_DIRECTORY/exchange-client-secret`.",
        secret=True,
    ),
    Setting(
        "database",
        "url",
        DATABASE_URL,
        None,
        "State database (SQLAlchemy URL); a password in it is masked in output.",
        secret=True,
        default_doc="`sqlite:///$STATE_DIRECTORY/foldertrack.db`, "
        "else `$XDG_STATE_HOME/foldertrack/foldertrack.db` (`~/.local/state/…`)",
    ),
    Setting(
        "rules",
        "dir",
        PATH,
        "rules",
        "Directory of `*.yaml` rule files; relative paths are relative to the config file's directory.",
        default_doc="`rules` next to the config file (`/etc/foldertrack/rules`)",
    ),
    Setting("watch", "poll_interval", _duration(True), "60s", "Sync interval of a mailbox in polling mode."),
    Setting(
        "watch",
        "safety_sync_interval",
        _duration(True),
        "15m",
        "Safety-net sync of every folder, even while streaming (each mailbox at a random point "
        "between half and one and a half times this, so they are spread out).",
    ),
    Setting("watch", "workers", _integer(1), 4, "Sync worker threads."),
    Setting("watch", "debounce", _duration(False), "50ms", "Wait this long to merge a burst of events."),
    Setting("watch", "max_attempts", _integer(1), 5, "Attempts before an item is dead-lettered."),
    Setting(
        "watch",
        "stream_timeout",
        _duration(True),
        "10m",
        "How long one `GetStreamingEvents` request stays open (EWS allows 1 to 30 minutes); "
        "it is re-issued at once when it ends.",
    ),
    Setting(
        "watch",
        "stall_timeout",
        _duration(True),
        "2m",
        "A stream that sends nothing (not even a keep-alive) this long is cut and reconnected.",
    ),
    Setting("sink", "name", IDENTIFIER, "sql", "Activity sink plug-in (entry point `foldertrack.sinks`)."),
    Setting(
        "sink",
        "max_attachment_bytes",
        SIZE,
        "5MiB",
        "Attachments up to this size are stored; larger ones are flagged.",
    ),
    Setting("metrics", "address", ADDRESS, None, "Serve Prometheus metrics on HOST:PORT; unset: off."),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))


# --------------------------------------------------------------------------- the loaded configuration


@dataclass(frozen=True)
class ExchangeConfig:
    endpoint: str | None
    auth: Literal["basic", "ntlm", "oauth2"]
    username: str | None
    password_file: Path | None
    access: Literal["impersonation", "delegate"]
    verify_tls: bool
    version: str
    max_connections: int
    oauth2_tenant_id: str | None
    oauth2_client_id: str | None
    oauth2_client_secret_file: Path | None
    password: Secret | None = None
    oauth2_client_secret: Secret | None = None
    #: why a secret is missing, ``((attr, note), ...)``; used in error messages, never holds a secret
    secret_notes: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)

    def _require(self, attr: str) -> Secret:
        value = getattr(self, attr)
        if value is None:
            note = dict(self.secret_notes).get(attr, "not set")
            raise ConfigError(f"exchange {attr.replace('_', ' ')} is {note}")
        return value

    def require_password(self) -> Secret:
        """The password, or ConfigError saying where it was looked for. Only commands that connect call it."""
        return self._require("password")

    def require_client_secret(self) -> Secret:
        return self._require("oauth2_client_secret")

    def connection_problems(self) -> list[str]:
        """What is missing to connect with this configuration (empty when ready)."""
        problems = [] if self.endpoint else ["exchange.endpoint is not set"]
        if self.auth == "oauth2":
            for key in ("oauth2_tenant_id", "oauth2_client_id"):
                if not getattr(self, key):
                    problems.append(f'exchange.{key} is not set (needed for auth = "oauth2")')
            if self.oauth2_client_secret is None:
                problems.append(
                    f"exchange oauth2 client secret is {dict(self.secret_notes).get('oauth2_client_secret')}"
                )
        else:
            if not self.username:
                problems.append(f"exchange.username is not set (needed for auth = {self.auth!r})")
            if self.password is None:
                problems.append(f"exchange password is {dict(self.secret_notes).get('password')}")
        return problems

    def require_connectable(self) -> None:
        """Raise ConfigError listing everything missing to connect (for ``run`` and friends)."""
        problems = self.connection_problems()
        if problems:
            raise ConfigError("\n".join(problems))


@dataclass(frozen=True)
class DatabaseConfig:
    url: str

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for output and logs."""
        return re.sub(r"^([^:/]+://[^:/@]*:)[^@]*@", r"\1***@", self.url)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a ``sqlite:///`` URL (its directory may need creating), else None."""
        match = re.match(r"^sqlite(\+\w+)?:///(.+?)(\?.*)?$", self.url)
        return Path(match.group(2)) if match and match.group(2) != ":memory:" else None


@dataclass(frozen=True)
class RulesConfig:
    dir: Path


@dataclass(frozen=True)
class WatchConfig:
    poll_interval: float
    safety_sync_interval: float
    workers: int
    debounce: float
    max_attempts: int
    stream_timeout: float
    stall_timeout: float


@dataclass(frozen=True)
class SinkConfig:
    name: str
    max_attachment_bytes: int


@dataclass(frozen=True)
class MetricsConfig:
    address: str | None

    @property
    def host(self) -> str | None:
        return self.address.rpartition(":")[0].strip("[]") if self.address else None

    @property
    def port(self) -> int | None:
        return int(self.address.rpartition(":")[2]) if self.address else None


SECTION_CLASSES: dict[str, type] = {
    "exchange": ExchangeConfig,
    "database": DatabaseConfig,
    "rules": RulesConfig,
    "watch": WatchConfig,
    "sink": SinkConfig,
    "metrics": MetricsConfig,
}


@dataclass(frozen=True)
class Config:
    """The effective configuration. ``source`` is the file it was read from (None: defaults only)."""

    exchange: ExchangeConfig
    database: DatabaseConfig
    rules: RulesConfig
    watch: WatchConfig
    sink: SinkConfig
    metrics: MetricsConfig
    source: Path | None = None
    #: ``section.key`` names set in the file (the rest are defaults)
    explicit_keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


# --------------------------------------------------------------------------- loading


def default_database_url(env: Mapping[str, str]) -> str:
    """systemd's ``StateDirectory`` when running as a service, else the XDG state directory."""
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        return f"sqlite:///{Path(state_dir) / 'foldertrack.db'}"
    xdg = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return f"sqlite:///{Path(xdg) / 'foldertrack' / 'foldertrack.db'}"


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
        by_key = {s.key: s.name for s in SETTINGS}
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


# --------------------------------------------------------------------------- derived views


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _display(setting: Setting, value: Any) -> str:
    if setting.kind.name == "duration":
        return _toml_value(format_duration(value))
    if setting.kind is SIZE:
        return _toml_value(format_size(value))
    if setting.name == "database.url":
        return _toml_value(DatabaseConfig(value).display_url)
    return _toml_value(value)


def render_config(config: Config) -> str:
    """The effective configuration as TOML, secrets masked, defaults marked: ``config check``'s output."""
    out = [f"# effective configuration from {config.source or 'built-in defaults (no file)'}"]
    for section in SECTIONS:
        out.append(f"\n[{section}]")
        section_obj = getattr(config, section)
        for setting in (s for s in SETTINGS if s.section == section):
            value = getattr(section_obj, setting.key)
            if value is None:
                out.append(f"# {setting.key} is not set")
            else:
                comment = "" if setting.name in config.explicit_keys else "  # default"
                out.append(f"{setting.key} = {_display(setting, value)}{comment}")
        for spec in (s for s in SECRETS if s.section == section):
            secret: Secret | None = getattr(section_obj, spec.attr)
            if secret is not None:
                out.append(f"# {spec.attr}: *** (from {secret.source})")
            else:
                out.append(f"# {spec.attr}: {dict(config.exchange.secret_notes).get(spec.attr)}")
    return "\n".join(out)


def settings_markdown() -> str:
    """The README's configuration reference table, one row per setting."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = s.default_doc or ("unset" if s.default is None else f"`{_toml_value(s.default)}`")
        rows.append(f"| `{s.name}` | {s.kind.name} | {default} | {s.help} |")
    return "\n".join(rows)


def _check_declarations() -> None:
    """Fail at import if a section dataclass and the settings table disagree (they are one declaration)."""
    for name, cls in SECTION_CLASSES.items():
        declared = {s.key for s in SETTINGS if s.section == name}
        extra = {spec.attr for spec in SECRETS if spec.section == name}
        extra |= {"secret_notes"} if name == "exchange" else set()
        actual = {f.name for f in fields(cls)}
        if actual != declared | extra:
            raise RuntimeError(
                f"[{name}] settings and {cls.__name__} fields differ: {actual ^ (declared | extra)}"
            )


_check_declarations()


if __name__ == "__main__":  # python -m foldertrack.config > table.md: regenerate the README table
    print(settings_markdown())
