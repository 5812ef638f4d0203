"""Graph fixtures: a started simulator with a mailbox, a registered app, and a real client stack
(MSAL → token endpoint, ``requests`` → ``/v1.0/`` over verified TLS).

``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are removed for the test (requests would let them override
``verify=``). ``graph_csdl`` skips with the reason when ``../shared/graph`` (or ``$FOLDERTRACK_SHARED/graph``)
is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from foldertrack.simulator import Simulator
from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT

__all__ = ["GraphContext", "connect_graph", "graph", "graph_csdl", "graph_factory"]

MAILBOX = "alice@contoso.example"


@dataclass
class GraphContext:
    sim: Simulator
    mailbox: str
    tenant: str = DEMO_TENANT
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    clients: list[Any] = field(default_factory=list, repr=False)

    @property
    def base(self) -> str:
        return f"{self.sim.https_base}/v1.0"

    @property
    def ca_path(self) -> str:
        return self.sim.ca_path

    def user(self, path: str = "", mailbox: str | None = None) -> str:
        return f"{self.base}/users/{mailbox or self.mailbox}/{path.lstrip('/')}".rstrip("/")

    def token(self, scope: str = "https://graph.microsoft.com/.default") -> str:
        """A fresh token through MSAL (never the cache)."""
        import msal

        app = msal.ConfidentialClientApplication(
            self.client_id,
            authority=f"{self.sim.https_base}/{self.tenant}",
            client_credential=self.client_secret,
            instance_discovery=False,
            verify=self.ca_path,
        )
        result = app.acquire_token_for_client([scope], claims_challenge='{"access_token":{}}')
        if "access_token" not in result:
            raise AssertionError(
                f"token request failed: {result.get('error')}: {result.get('error_description')}"
            )
        return str(result["access_token"])

    def session(self, token: str | None = None, immutable: bool = True) -> Any:
        """A plain ``requests.Session`` with a bearer token (raw protocol tests)."""
        import requests

        session = requests.Session()
        session.verify = self.ca_path
        session.headers["Authorization"] = f"Bearer {token or self.token()}"
        if immutable:
            session.headers["Prefer"] = 'IdType="ImmutableId"'
        return session

    def client(self, **kwargs: Any) -> Any:
        """The foldertrack Graph client against the simulator (closed at teardown)."""
        from foldertrack.sources.graph.auth import GraphAuthenticator
        from foldertrack.sources.graph.client import GraphClient

        auth = GraphAuthenticator(
            self.tenant,
            self.client_id,
            self.client_secret,
            authority=self.sim.https_base,
            verify=self.ca_path,
        )
        client = GraphClient(auth, base_url=self.base, verify=self.ca_path, **kwargs)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


def connect_graph(sim: Simulator, mailbox: str = MAILBOX) -> GraphContext:
    """Register the demo app on a started ``sim`` (adding ``mailbox`` if missing)."""
    sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    if mailbox.lower() not in (m.lower() for m in sim.mailboxes()):
        sim.add_mailbox(mailbox)
    return GraphContext(sim, mailbox)


@pytest.fixture
def graph_factory(
    simulator_factory: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., GraphContext]]:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    contexts: list[GraphContext] = []

    def make(mailbox: str = MAILBOX, **kwargs: Any) -> GraphContext:
        context = connect_graph(simulator_factory(**kwargs), mailbox)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def graph(graph_factory: Callable[..., GraphContext]) -> GraphContext:
    """A started simulator with mailbox ``alice@contoso.example`` and the demo app registered."""
    return graph_factory()


@pytest.fixture(scope="session")
def graph_csdl() -> Any:
    """Microsoft's Graph v1.0 CSDL (:class:`foldertrack.testing.csdl.Csdl`); skips when it is missing."""
    from foldertrack.testing.csdl import CsdlMissing, load_graph_csdl

    try:
        return load_graph_csdl()
    except CsdlMissing as exc:
        pytest.skip(f"Graph schema conformance skipped: {exc}")
