"""One EWS configuration for the whole process, one exchangelib ``Account`` per watched mailbox.

Everything is explicit (endpoint, auth type, version): no autodiscover, no probing requests at start-up.
All accounts share one exchangelib protocol and so one HTTP session pool; it is sized for the streaming
connections plus the sync workers, because exchangelib's default of one session deadlocks a stream and a
``GetItem`` that wait for each other.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from exchangelib import DELEGATE, IMPERSONATION, UTC, Account, Configuration, Credentials, Identity
from exchangelib.credentials import OAuth2Credentials
from exchangelib.errors import SessionPoolMinSizeReached
from exchangelib.protocol import BaseProtocol, FailFast, NoVerifyHTTPAdapter
from exchangelib.transport import BASIC, NTLM, OAUTH2
from exchangelib.version import (
    EXCHANGE_2010_SP2,
    EXCHANGE_2013,
    EXCHANGE_2013_SP1,
    EXCHANGE_2016,
    EXCHANGE_2019,
    EXCHANGE_O365,
    Version,
)

from foldertrack.errors import ConfigError

log = logging.getLogger(__name__)

#: EWS schema version names accepted in ``exchange.version``.
EWS_VERSIONS = {
    "Exchange2010_SP2": EXCHANGE_2010_SP2,
    "Exchange2013": EXCHANGE_2013,
    "Exchange2013_SP1": EXCHANGE_2013_SP1,
    "Exchange2016": EXCHANGE_2016,
    "Exchange2019": EXCHANGE_2019,
    "ExchangeOnline": EXCHANGE_O365,
}
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
            log.warning("TLS certificate verification is OFF (exchange.verify_tls = false)")
            BaseProtocol.HTTP_ADAPTER_CLS = NoVerifyHTTPAdapter
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
            version=Version(build=EWS_VERSIONS[settings.version]),
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
