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
    ENTITY_SETS,
    HTTP_URL,
    HTTPS_URL,
    IDENTIFIER,
    PATH,
    STRING,
    Kind,
    _choice,
    _duration,
    _integer,
    _integer_range,
    _size_between,
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
        _integer(0, 1000),
        0,
        "HTTP connections to Exchange; 0 sizes the pool for streams + workers.",
    ),
    Setting(
        "exchange",
        "request_timeout",
        _duration(True, 1.0, 3600.0),
        "5m",
        "Total deadline of one EWS request (not only between two bytes): a response still unfinished "
        "then is cut and the work retried. Streaming requests have `watch.stall_timeout` instead.",
    ),
    Setting(
        "exchange",
        "max_response_size",
        _size_between(2**20, 2**31),
        "128MiB",
        "Largest EWS response read; a larger one is cut off and treated as an error, never as data.",
    ),
    Setting("exchange", "oauth2_tenant_id", STRING, None, "Entra ID tenant (oauth2)."),
    Setting("exchange", "oauth2_client_id", STRING, None, "App registration's client id (oauth2)."),
    Setting(
        "exchange",
        "oauth2_client_secret_file",
        PATH,
        None,
        "File holding the client secret (oauth2); else `$FOLDERTRACK_EXCHANGE_CLIENT_SECRET`, "
        "else `$CREDENTIALS_DIRECTORY/exchange-client-secret`. Not needed with `oauth2_certificate_file`.",
        secret=True,
    ),
    Setting(
        "exchange",
        "oauth2_certificate_file",
        PATH,
        None,
        "PEM file with the app's private key and certificate (oauth2), used instead of a client secret.",
        secret=True,
    ),
    Setting(
        "exchange",
        "oauth2_authority",
        HTTPS_URL,
        "https://login.microsoftonline.com",
        "Token authority host (sovereign clouds: e.g. `https://login.microsoftonline.us`).",
    ),
    Setting(
        "exchange",
        "oauth2_scope",
        STRING,
        "https://outlook.office365.com/.default",
        "Token scope: Exchange's application ID URI + `/.default` (hybrid: `https://mail.example.com/.default`).",
    ),
    Setting(
        "exchange",
        "ca_file",
        PATH,
        None,
        "PEM file of CA certificates to verify Exchange and the token authority with; unset: the system's.",
    ),
    Setting(
        "exchange",
        "source",
        _choice("ews", "graph"),
        "ews",
        "Read mailboxes through EWS or Microsoft Graph (`[graph]`; Exchange Online after EWS is switched off).",
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
    Setting(
        "watch",
        "poll_interval",
        _duration(True, maximum=86400.0),
        "60s",
        "Sync interval of a mailbox in polling mode.",
    ),
    Setting(
        "watch",
        "safety_sync_interval",
        _duration(True, 1.0, 7 * 86400.0),
        "15m",
        "Safety-net sync of every folder, even while streaming (each mailbox's first one at a random point "
        "within one round, then every half to one and a half rounds, so they are spread out).",
    ),
    Setting(
        "watch",
        "safety_sync_rate",
        _integer(1, 10000),
        3,
        "Most safety-net syncs started per second (folders, plus one folder-tree read per mailbox): with "
        "more folders than this times `safety_sync_interval`, a round takes longer instead of costing more CPU "
        "(each costs about 11 ms of CPU: 3 a second are about 3.5 % of a core).",
    ),
    Setting("watch", "workers", _integer(1, 256), 4, "Sync worker threads."),
    Setting(
        "watch",
        "debounce",
        _duration(False, maximum=60.0),
        "50ms",
        "The first event starts a catch-up at once; events arriving while it runs start one more, this "
        "long after it ends (merges a burst).",
    ),
    Setting("watch", "max_attempts", _integer(1, 100), 5, "Attempts before an item is dead-lettered."),
    Setting(
        "watch",
        "stream_timeout",
        _duration(True, 60.0, 1800.0),
        "10m",
        "How long one `GetStreamingEvents` request stays open (EWS allows 1 to 30 minutes); "
        "it is re-issued at once when it ends.",
    ),
    Setting(
        "watch",
        "stall_timeout",
        _duration(True, 1.0, 3600.0),
        "2m",
        "A stream that sends nothing (not even a keep-alive) this long is cut and reconnected.",
    ),
    Setting(
        "watch",
        "stream_per_mailbox",
        BOOLEAN,
        False,
        "One streaming connection per mailbox instead of up to 200 mailboxes per connection, for servers "
        "that stream only one user's subscriptions per connection (detected and applied by itself too).",
    ),
    Setting(
        "watch",
        "stuck_timeout",
        _duration(True, 1.0, 86400.0),
        "10m",
        "A mailbox's sync that makes no progress this long is stuck: `status` says so, its connection is "
        "cut and the work retried; still stuck after as long again, the service watchdog restarts us.",
    ),
    Setting(
        "watch",
        "start_timeout",
        _duration(True, 1.0, 3600.0),
        "1m",
        "A mailbox whose folders are not resolved and subscribed (or polling) this long after its start work "
        "first ran is reported in `error` with the reason (Exchange unreachable, wrong URL, refused "
        "credentials) in `status`, `/healthz` and metrics; it keeps being retried. A mailbox still queued "
        "behind others (a start of thousands) is starting, not failing.",
    ),
    Setting(
        "watch",
        "lease_ttl",
        _duration(True, 3.0, 600.0),
        "30s",
        "Lifetime of an instance's heartbeat and mailbox leases (renewed every third of it): a dead "
        "instance's mailboxes move to the others after this long; a clean stop hands them over at once.",
    ),
    Setting("sink", "name", IDENTIFIER, "sql", "Activity sink plug-in (entry point `foldertrack.sinks`)."),
    Setting(
        "sink",
        "max_attachment_bytes",
        _size_between(0, 2**30),
        "5MiB",
        "Attachments up to this size are stored; larger ones are flagged.",
    ),
    # -- delivery outbox (sinks other than `sql`) --
    Setting(
        "delivery",
        "workers",
        _integer(1, 64),
        4,
        "Delivery worker threads feeding the sink (at most 64, and at most the sink's own concurrency cap).",
    ),
    Setting(
        "delivery",
        "unhealthy_after",
        _duration(True, 10.0, 7 * 86400.0),
        "10m",
        "`/healthz` answers 503 once delivery to the sink has been failing this long.",
    ),
    Setting(
        "delivery",
        "max_backoff",
        _duration(True, 1.0, 86400.0),
        "5m",
        "Longest wait between two attempts of an entry the sink refused for a transient reason "
        "(never shorter than the sink's `Retry-After`).",
    ),
    Setting(
        "delivery",
        "retention",
        _duration(True, 60.0, 366 * 86400.0),
        "7d",
        "Delivered outbox entries are kept this long (for `status`), then pruned.",
    ),
    Setting(
        "delivery",
        "scan_interval",
        _duration(True, 0.05, 300.0),
        "2s",
        "How often idle workers look for entries another process queued (`foldertrack retry`).",
    ),
    Setting(
        "delivery",
        "feedback",
        BOOLEAN,
        True,
        "Set an Outlook category on each mail once the sink confirms it (or dead-letters it); "
        'never with `sink.name = "sql"`.',
    ),
    Setting(
        "delivery",
        "feedback_category",
        STRING,
        "Tracked to CRM",
        "Category added to a mail the sink confirmed.",
    ),
    Setting(
        "delivery",
        "failed_category",
        STRING,
        "Tracking failed",
        "Category added to a mail whose delivery was dead-lettered (removed again once it is confirmed).",
    ),
    Setting("metrics", "address", ADDRESS, None, "Serve Prometheus metrics on HOST:PORT; unset: off."),
    # -- webhook sink (`sink.name = "webhook"`) --
    Setting("webhook", "url", HTTP_URL, None, "Receiver URL the webhook sink POSTs each decision to."),
    Setting(
        "webhook",
        "secret_file",
        PATH,
        None,
        "File holding the HMAC-SHA256 signing secret; else `$FOLDERTRACK_WEBHOOK_SECRET`, "
        "else `$CREDENTIALS_DIRECTORY/webhook-secret`.",
        secret=True,
    ),
    Setting(
        "webhook", "timeout", _duration(True, 0.1, 600.0), "10s", "Connect and read timeout of one POST."
    ),
    Setting(
        "webhook",
        "ca_file",
        PATH,
        None,
        "PEM file of CA certificates to verify the receiver with; unset: the system's. Always verified.",
    ),
    Setting("webhook", "max_concurrency", _integer(1, 64), 4, "POSTs in flight at once (delivery workers)."),
    Setting("webhook", "include_body", BOOLEAN, True, "Send the mail's text and HTML body."),
    Setting(
        "webhook",
        "include_attachments",
        BOOLEAN,
        False,
        "Send stored attachment content (base64); otherwise only name, type, size and SHA-256.",
    ),
    # -- Dataverse / Dynamics 365 sink (`sink.name = "dataverse"`) and `records sync` (H3) --
    Setting(
        "dataverse",
        "url",
        HTTPS_URL,
        None,
        "Organization URL, e.g. `https://contoso.crm4.dynamics.com` (on-premises: `https://crm.example/ORG`).",
    ),
    Setting(
        "dataverse", "auth", _choice("oauth2", "ntlm"), "oauth2", "Client credentials (Entra ID) or NTLM."
    ),
    Setting("dataverse", "tenant_id", STRING, None, "Entra ID tenant (oauth2)."),
    Setting("dataverse", "client_id", STRING, None, "App registration's client id (oauth2)."),
    Setting(
        "dataverse",
        "client_secret_file",
        PATH,
        None,
        "File holding the client secret (oauth2); else `$FOLDERTRACK_DATAVERSE_CLIENT_SECRET`, "
        "else `$CREDENTIALS_DIRECTORY/dataverse-client-secret`. Not needed with `certificate_file`.",
        secret=True,
    ),
    Setting(
        "dataverse",
        "certificate_file",
        PATH,
        None,
        "PEM file with the app's private key and certificate (oauth2), used instead of a client secret.",
        secret=True,
    ),
    Setting(
        "dataverse",
        "authority",
        HTTPS_URL,
        "https://login.microsoftonline.com",
        "Token authority host (sovereign clouds: e.g. `https://login.microsoftonline.us`).",
    ),
    Setting("dataverse", "username", STRING, None, "Account for NTLM (`DOMAIN\\user`)."),
    Setting(
        "dataverse",
        "password_file",
        PATH,
        None,
        "File holding the NTLM password; else `$FOLDERTRACK_DATAVERSE_PASSWORD`, "
        "else `$CREDENTIALS_DIRECTORY/dataverse-password`.",
        secret=True,
    ),
    Setting("dataverse", "api_version", STRING, "9.2", "Web API version (on-premises 9.0/9.1: `9.1`)."),
    Setting(
        "dataverse",
        "ca_file",
        PATH,
        None,
        "PEM file of CA certificates to verify the server and authority with; unset: the system's.",
    ),
    Setting("dataverse", "timeout", _duration(True), "30s", "Connect and read timeout of one request."),
    Setting(
        "dataverse",
        "max_concurrency",
        _integer_range(1, 52),
        8,
        "Requests in flight at once (delivery workers); Dataverse allows 52 per user.",
    ),
    Setting(
        "dataverse",
        "attachments_over_limit",
        _choice("footer", "skip"),
        "footer",
        "Attachments larger than `sink.max_attachment_bytes` are named in a footer of the description "
        "(`footer`) or left out silently (`skip`).",
    ),
    Setting(
        "dataverse",
        "entity_sets",
        ENTITY_SETS,
        None,
        'Entity set of each custom table a rule names, e.g. `{ new_project = "new_projects" }`.',
        default_doc="standard tables only",
    ),
    Setting(
        "dataverse",
        "records_sync_interval",
        _duration(False),
        "0s",
        "`run` syncs accounts, contacts and leads from Dataverse this often; `0s`: only `records sync`.",
    ),
    # -- Microsoft Graph source (`exchange.source = "graph"`, H13) --
    Setting("graph", "tenant_id", STRING, None, "Entra ID tenant of the app registration."),
    Setting(
        "graph", "client_id", STRING, None, "App registration's client id (Mail.Read or Mail.ReadWrite)."
    ),
    Setting(
        "graph",
        "client_secret_file",
        PATH,
        None,
        "File holding the client secret; else `$FOLDERTRACK_GRAPH_CLIENT_SECRET`, "
        "else `$CREDENTIALS_DIRECTORY/graph-client-secret`. Not needed with `certificate_file`.",
        secret=True,
    ),
    Setting(
        "graph",
        "certificate_file",
        PATH,
        None,
        "PEM file with the app's private key and certificate, used instead of a client secret.",
        secret=True,
    ),
    Setting(
        "graph",
        "authority",
        HTTP_URL,
        "https://login.microsoftonline.com",
        "Token authority host (sovereign clouds: e.g. `https://login.microsoftonline.us`).",
    ),
    Setting(
        "graph",
        "base_url",
        HTTP_URL,
        "https://graph.microsoft.com/v1.0",
        "Graph endpoint (sovereign clouds: e.g. `https://graph.microsoft.us/v1.0`).",
    ),
    Setting(
        "graph",
        "ca_file",
        PATH,
        None,
        "PEM file of CA certificates to verify Graph and the authority with; unset: the system's.",
    ),
    Setting(
        "graph",
        "poll_interval",
        _duration(True, 1.0, 3600.0),
        "5s",
        "Delta poll of each mailbox (each tracked folder and the folder tree: one request each).",
    ),
    Setting(
        "graph",
        "page_size",
        _integer(10, 1000),
        100,
        "Changes per delta page (`Prefer: odata.maxpagesize`).",
    ),
    Setting(
        "graph",
        "notification_url",
        HTTP_URL,
        None,
        "Public HTTPS URL Graph posts change notifications to (a reverse proxy forwarding to "
        "`graph.listen`); unset: delta polling only.",
    ),
    Setting(
        "graph",
        "listen",
        ADDRESS,
        "127.0.0.1:8765",
        "Local HOST:PORT of the change notification listener (with `graph.notification_url`).",
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))
