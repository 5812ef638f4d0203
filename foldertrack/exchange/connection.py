"""One EWS configuration for the whole process, one exchangelib ``Account`` per watched mailbox.

Everything is explicit (endpoint, auth type, version): no autodiscover, no probing requests at start-up.
All accounts share one exchangelib protocol and so one HTTP session pool; it is sized for the streaming
connections plus the sync workers, because exchangelib's default of one session deadlocks a stream and a
``GetItem`` that wait for each other.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass

from exchangelib import DELEGATE, IMPERSONATION, UTC, Account, Configuration, Credentials, Identity
from exchangelib.credentials import OAuth2Credentials
from exchangelib.errors import SessionPoolMinSizeReached
from exchangelib.protocol import BaseProtocol, FailFast
from exchangelib.transport import BASIC, NTLM, OAUTH2
from exchangelib.version import VERSIONS, Build, Version
from urllib3.exceptions import InsecureRequestWarning

from foldertrack.config.settings import EWS_VERSIONS as CONFIG_EWS_VERSIONS
from foldertrack.errors import ConfigError
from foldertrack.exchange.transport import GuardedAdapter, GuardedNoVerifyAdapter, set_limits

log = logging.getLogger(__name__)


def _builds() -> dict[str, Build]:
    """``exchange.version`` names (the settings table's list: one declaration) → the first exchangelib
    build that speaks that ``RequestServerVersion``."""
    builds: dict[str, Build] = {}
    for build, api_version, _name in VERSIONS:
        builds.setdefault(api_version, build)
    missing = set(CONFIG_EWS_VERSIONS) - set(builds)
    if missing:  # the settings table names a version this exchangelib cannot send
        raise RuntimeError(f"exchangelib knows no build for {sorted(missing)}")
    return {name: builds[name] for name in CONFIG_EWS_VERSIONS}


#: EWS schema version names accepted in ``exchange.version`` (exactly the settings table's list).
EWS_VERSIONS = _builds()
_TLS_WARNED = threading.Event()
_AUTH_TYPES = {"basic": BASIC, "ntlm": NTLM, "oauth2": OAUTH2}


@dataclass(frozen=True)
class ExchangeSettings:
    """What the connector needs, decoupled from the config file's layout; ``password`` is the revealed secret."""

    endpoint: str
    auth: str
    username: str
    password: str
    access: str = "impersonation"
    version: str = "Exchange2016"
    verify_tls: bool = True
    oauth2_tenant_id: str | None = None
    oauth2_client_id: str | None = None
    request_timeout: float = 300.0  # total deadline of one non-streaming request
    max_response_size: int = 128 * 2**20

    def __repr__(self) -> str:  # never show the password
        return f"ExchangeSettings(endpoint={self.endpoint!r}, auth={self.auth!r}, username={self.username!r})"


class ExchangeConnector:
    """Creates and caches per-mailbox exchangelib accounts over one shared, explicitly sized protocol."""

    def __init__(self, settings: ExchangeSettings, max_connections: int):
        if settings.auth not in _AUTH_TYPES:
            raise ConfigError(f"exchange.auth: {settings.auth!r} is not one of {', '.join(_AUTH_TYPES)}")
        if settings.version not in EWS_VERSIONS:
            raise ConfigError(
                f"exchange.version: {settings.version!r} is not one of {', '.join(EWS_VERSIONS)}"
            )
        if not settings.verify_tls:
            _warn_tls_off()
        BaseProtocol.HTTP_ADAPTER_CLS = GuardedAdapter if settings.verify_tls else GuardedNoVerifyAdapter
        set_limits(settings.request_timeout, settings.max_response_size)
        self.settings = settings
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        if settings.auth == "oauth2":
            credentials = OAuth2Credentials(
                client_id=settings.oauth2_client_id,
                client_secret=settings.password,
                tenant_id=settings.oauth2_tenant_id,
                identity=Identity(primary_smtp_address=settings.username),
            )
        else:
            credentials = Credentials(username=settings.username, password=settings.password)
        self.configuration = Configuration(
            service_endpoint=settings.endpoint,
            credentials=credentials,
            auth_type=_AUTH_TYPES[settings.auth],
            version=Version(build=EWS_VERSIONS[settings.version], api_version=settings.version),
            retry_policy=FailFast(),  # our dispatcher is the one retry layer
            max_connections=max(2, max_connections),
        )

    def account(self, mailbox: str) -> Account:
        """The exchangelib account acting for ``mailbox`` (impersonation, or delegate access)."""
        with self._lock:
            account = self._accounts.get(mailbox)
            if account is None:
                account = Account(
                    primary_smtp_address=mailbox,
                    config=self.configuration,
                    autodiscover=False,
                    access_type=IMPERSONATION if self.settings.access == "impersonation" else DELEGATE,
                    default_timezone=UTC,
                    locale="en_US",
                )
                _keep_pool_size(account.protocol)
                self._accounts[mailbox] = account
            return account

    @property
    def max_connections(self) -> int:
        return self.configuration.max_connections

    def close(self) -> None:
        """Close every pooled HTTP session."""
        with self._lock:
            accounts = list(self._accounts.values())
            self._accounts.clear()
        if accounts:
            accounts[0].protocol.close()


def _warn_tls_off() -> None:
    """Once per process, loudly; urllib3's per-request InsecureRequestWarning would say it thousands of
    times (and, printed raw, break JSON logs)."""
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    if not _TLS_WARNED.is_set():
        _TLS_WARNED.set()
        log.warning(
            "TLS certificate verification is OFF (exchange.verify_tls = false): anyone on the path can "
            "read and change the traffic, credentials included. Use only against a test server."
        )


def _refuse_to_shrink() -> None:
    raise SessionPoolMinSizeReached("foldertrack sizes the EWS session pool itself")


def _keep_pool_size(protocol) -> None:
    """Stop exchangelib from shrinking the shared session pool on ``ErrorServerBusy``.

    exchangelib 5.6 shrinks it by taking a session while holding a non-reentrant lock; when no session is
    idle (a stream holds one, workers the rest) that waits forever, and every worker hangs. We size the
    pool for our streams and workers and back off the throttled mailbox ourselves, so the pool keeps its
    size: exchangelib then re-raises ``ErrorServerBusy`` (and ``ErrorExceededConnectionCount``) to us.
    """
    protocol.decrease_poolsize = _refuse_to_shrink
