"""One EWS configuration for the whole process, one exchangelib ``Account`` per watched mailbox.

Everything is explicit (endpoint, auth type, version): no autodiscover, no probing requests at start-up.
All accounts share one exchangelib protocol and so one HTTP session pool; it is sized for the streaming
connections plus the sync workers, because exchangelib's default of one session deadlocks a stream and a
``GetItem`` that wait for each other.

``auth = "oauth2"`` is app-only OAuth2 (Exchange Online): MSAL client credentials with a secret or a
certificate, handed to exchangelib by :mod:`foldertrack.exchange.oauth`; the endpoint must be https.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from exchangelib import DELEGATE, IMPERSONATION, UTC, Account, Configuration, Credentials, Identity
from exchangelib.errors import SessionPoolMinSizeReached
from exchangelib.protocol import BaseProtocol, FailFast
from exchangelib.transport import BASIC, NTLM, OAUTH2
from exchangelib.version import VERSIONS, Build, Version
from urllib3.exceptions import InsecureRequestWarning

from foldertrack.config.settings import EWS_VERSIONS as CONFIG_EWS_VERSIONS
from foldertrack.crm.auth import DEFAULT_AUTHORITY, CertificateCredential
from foldertrack.errors import ConfigError
from foldertrack.exchange.oauth import (
    EXCHANGE_ONLINE_SCOPE,
    EwsAuthenticator,
    MsalCredentials,
    OAuth2FailFast,
)
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
    """What the connector needs, decoupled from the config file's layout; ``password`` is the revealed secret
    (the client secret with ``oauth2``, unless ``oauth2_certificate_file`` names a PEM key + certificate)."""

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
    oauth2_authority: str = DEFAULT_AUTHORITY  # token authority host (the simulator's in tests)
    oauth2_scope: str = EXCHANGE_ONLINE_SCOPE
    oauth2_certificate_file: Path | None = None
    ca_file: str | None = None  # PEM CA bundle for the EWS server and the authority; None: the system's

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
        BaseProtocol.HTTP_ADAPTER_CLS = _adapter(settings)
        set_limits(settings.request_timeout, settings.max_response_size)
        self.settings = settings
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self.authenticator: EwsAuthenticator | None = None
        if settings.auth == "oauth2":
            self.authenticator = _authenticator(settings)
            credentials: Credentials | MsalCredentials = MsalCredentials(
                self.authenticator, identity=_delegate_identity(settings)
            )
            retry_policy: FailFast = OAuth2FailFast(self.authenticator)
        else:
            credentials = Credentials(username=settings.username, password=settings.password)
            retry_policy = FailFast()
        self.configuration = Configuration(
            service_endpoint=settings.endpoint,
            credentials=credentials,
            auth_type=_AUTH_TYPES[settings.auth],
            version=Version(build=EWS_VERSIONS[settings.version], api_version=settings.version),
            retry_policy=retry_policy,  # fail fast: our dispatcher is the one retry layer
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
        if self.authenticator is not None:
            self.authenticator.close()


def _authenticator(settings: ExchangeSettings) -> EwsAuthenticator:
    """MSAL client credentials for EWS; app-only tokens are only ever sent over https."""
    if urlsplit(settings.endpoint).scheme != "https":
        raise ConfigError(f'exchange.endpoint must be https with auth = "oauth2" (not {settings.endpoint})')
    missing = [k for k in ("oauth2_tenant_id", "oauth2_client_id") if not getattr(settings, k)]
    if missing:
        raise ConfigError("; ".join(f'exchange.{k} is not set (needed for auth = "oauth2")' for k in missing))
    certificate = settings.oauth2_certificate_file
    return EwsAuthenticator(
        str(settings.oauth2_tenant_id),
        str(settings.oauth2_client_id),
        CertificateCredential(certificate) if certificate is not None else settings.password,
        authority=settings.oauth2_authority,
        scope=settings.oauth2_scope,
        verify=(settings.ca_file or True) if settings.verify_tls else False,
        timeout=min(60.0, settings.request_timeout),
    )


def _delegate_identity(settings: ExchangeSettings) -> Identity | None:
    """With delegate access an app-only token still needs one user to impersonate (``exchange.username``);
    with impersonation every account names its own mailbox."""
    if settings.access != "delegate":
        return None
    if "@" not in (settings.username or ""):
        raise ConfigError(
            'exchange.access = "delegate" with auth = "oauth2" needs exchange.username (the user whose '
            'delegate rights the app uses); app-only tokens otherwise need access = "impersonation"'
        )
    return Identity(primary_smtp_address=settings.username)


class _CaBundle:
    """Verify the server against ``exchange``'s own CA file (exchangelib's documented adapter hook)."""

    ca_file = ""

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        verify = verify if verify is False else self.ca_file
        return super().send(request, stream, timeout, verify, cert, proxies)  # type: ignore[misc]


def _adapter(settings: ExchangeSettings) -> type:
    if not settings.verify_tls:
        return GuardedNoVerifyAdapter
    if not settings.ca_file:
        return GuardedAdapter
    return type("GuardedCaAdapter", (_CaBundle, GuardedAdapter), {"ca_file": settings.ca_file})


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
