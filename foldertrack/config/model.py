"""The loaded configuration: one frozen dataclass per section, fields named exactly like the settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from foldertrack.config.secrets import Secret
from foldertrack.errors import ConfigError


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
    oauth2_certificate_file: Path | None = None
    oauth2_authority: str = "https://login.microsoftonline.com"
    oauth2_scope: str = "https://outlook.office365.com/.default"
    ca_file: Path | None = None
    request_timeout: float = 300.0
    max_response_size: int = 128 * 2**20
    source: Literal["ews", "graph"] = "ews"
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
            if self.oauth2_client_secret is None and self.oauth2_certificate_file is None:
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
    stuck_timeout: float = 600.0
    stream_per_mailbox: bool = False
    lease_ttl: float = 30.0  # foldertrack.fleet
    start_timeout: float = 60.0  # foldertrack.watch.timer: not started by then → error
    safety_sync_rate: float = 3.0  # foldertrack.watch.timer: safety-net syncs per second at most


@dataclass(frozen=True)
class SinkConfig:
    name: str
    max_attachment_bytes: int


@dataclass(frozen=True)
class DeliveryConfig:
    workers: int
    unhealthy_after: float
    max_backoff: float
    retention: float
    scan_interval: float
    feedback: bool
    feedback_category: str
    failed_category: str


@dataclass(frozen=True)
class MetricsConfig:
    address: str | None

    @property
    def host(self) -> str | None:
        return self.address.rpartition(":")[0].strip("[]") if self.address else None

    @property
    def port(self) -> int | None:
        return int(self.address.rpartition(":")[2]) if self.address else None


@dataclass(frozen=True)
class WebhookConfig:
    url: str | None
    secret_file: Path | None
    timeout: float
    ca_file: Path | None
    max_concurrency: int
    include_body: bool
    include_attachments: bool
    secret: Secret | None = None


@dataclass(frozen=True)
class DataverseConfig:
    url: str | None
    auth: Literal["oauth2", "ntlm"]
    tenant_id: str | None
    client_id: str | None
    client_secret_file: Path | None
    certificate_file: Path | None
    authority: str
    username: str | None
    password_file: Path | None
    api_version: str
    ca_file: Path | None
    timeout: float
    max_concurrency: int
    attachments_over_limit: Literal["footer", "skip"]
    entity_sets: tuple[tuple[str, str], ...] | None
    records_sync_interval: float
    client_secret: Secret | None = None
    ntlm_password: Secret | None = None


@dataclass(frozen=True)
class GraphConfig:
    """``[graph]``: the Microsoft Graph source (``exchange.source = "graph"``)."""

    tenant_id: str | None
    client_id: str | None
    client_secret_file: Path | None
    certificate_file: Path | None
    authority: str
    base_url: str
    ca_file: Path | None
    poll_interval: float
    page_size: int
    notification_url: str | None = None
    listen: str = "127.0.0.1:8765"
    client_secret: Secret | None = None

    def connection_problems(self) -> list[str]:
        """What is missing to read mailboxes through Graph (empty when ready)."""
        problems = [f"graph.{k} is not set" for k in ("tenant_id", "client_id") if not getattr(self, k)]
        if self.client_secret is None and self.certificate_file is None:
            problems.append(
                "graph needs a client secret (graph.client_secret_file, $FOLDERTRACK_GRAPH_CLIENT_SECRET or "
                "$CREDENTIALS_DIRECTORY/graph-client-secret) or graph.certificate_file"
            )
        return problems


SECTION_CLASSES: dict[str, type] = {
    "exchange": ExchangeConfig,
    "database": DatabaseConfig,
    "rules": RulesConfig,
    "watch": WatchConfig,
    "sink": SinkConfig,
    "delivery": DeliveryConfig,
    "metrics": MetricsConfig,
    "webhook": WebhookConfig,
    "dataverse": DataverseConfig,
    "graph": GraphConfig,
}


@dataclass(frozen=True)
class Config:
    """The effective configuration. ``source`` is the file it was read from (None: defaults only)."""

    exchange: ExchangeConfig
    database: DatabaseConfig
    rules: RulesConfig
    watch: WatchConfig
    sink: SinkConfig
    delivery: DeliveryConfig
    metrics: MetricsConfig
    webhook: WebhookConfig
    dataverse: DataverseConfig
    source: Path | None = None
    #: ``section.key`` names set in the file (the rest are defaults)
    explicit_keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    graph: GraphConfig | None = None  # [graph]: always set by the loader
