"""The settings table: every configuration key declared once (name, kind, default, help).

The validator, ``config check`` and the README table all derive from :data:`SETTINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from foldertrack.config.kinds import (
    ADDRESS,
    BOOLEAN,
    DATABASE_URL,
    HTTP_URL,
    IDENTIFIER,
    PATH,
    SIZE,
    STRING,
    Kind,
    _choice,
    _duration,
    _integer,
)

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
