"""Dataverse fixtures: a started simulator with its HTTPS listener, a registered app and a ready
``requests.Session`` (bearer token from real MSAL, ``verify=sim.ca_path``, OData headers).

``dataverse`` skips with the reason when ``../shared/dataverse`` (or ``$FOLDERTRACK_SHARED/dataverse``)
is missing. ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are removed for the test: requests lets them
override a session's ``verify``, so MSAL's ``verify=`` would otherwise be ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from foldertrack.simulator import Simulator
from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT

__all__ = [
    "DataverseContext",
    "connect_dataverse",
    "dataverse",
    "dataverse_factory",
    "dataverse_metadata",
]

ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


@dataclass
class DataverseContext:
    """Everything a client of the simulated Dataverse needs; ``session`` is authenticated and verified."""

    sim: Simulator
    tenant: str
    client_id: str
    client_secret: str
    session: Any = field(repr=False, default=None)

    @property
    def crm(self) -> Any:
        return self.sim.crm

    @property
    def org_url(self) -> str:
        return self.sim.https_base

    @property
    def api(self) -> str:
        return f"{self.sim.https_base}/api/data/v9.2"

    @property
    def ca_path(self) -> str:
        return self.sim.ca_path

    @property
    def authority(self) -> str:
        return f"{self.sim.https_base}/{self.tenant}"

    @property
    def scope(self) -> str:
        return f"{self.sim.https_base}/.default"

    def url(self, path: str) -> str:
        return f"{self.api}/{path.lstrip('/')}"

    def msal_app(self, secret: str | None = None) -> Any:
        import msal

        return msal.ConfidentialClientApplication(
            self.client_id,
            authority=self.authority,
            client_credential=secret if secret is not None else self.client_secret,
            instance_discovery=False,
            verify=self.ca_path,
        )

    def token(self) -> str:
        """A fresh access token from the token endpoint, through MSAL (never the cache)."""
        result = self.msal_app().acquire_token_for_client(
            [self.scope], claims_challenge='{"access_token":{}}'
        )
        if "access_token" not in result:
            raise AssertionError(
                f"token request failed: {result.get('error')}: {result.get('error_description')}"
            )
        return str(result["access_token"])

    def new_session(self, token: str | None = None) -> Any:
        import requests

        session = requests.Session()
        session.verify = self.ca_path
        session.headers.update(ODATA_HEADERS)
        session.headers["Authorization"] = f"Bearer {token or self.token()}"
        return session


def connect_dataverse(
    sim: Simulator,
    tenant: str = DEMO_TENANT,
    client_id: str = DEMO_CLIENT_ID,
    client_secret: str = DEMO_CLIENT_SECRET,
) -> DataverseContext:
    """Register the app on a started ``sim`` and return a context with an authenticated session."""
    sim.identity.add_app(tenant, client_id, client_secret)
    context = DataverseContext(sim, tenant.lower(), client_id.lower(), client_secret)
    context.session = context.new_session()
    return context


@pytest.fixture(scope="session")
def dataverse_metadata() -> dict[str, Any]:
    """The table definitions from the CDM files; skips when they are not there."""
    from foldertrack.simulator.dataverse.metadata import MetadataMissing, load_tables

    try:
        return load_tables()
    except MetadataMissing as exc:
        pytest.skip(f"Dataverse simulator tests skipped: {exc}")


@pytest.fixture
def dataverse_factory(
    simulator_factory: Callable[..., Simulator],
    dataverse_metadata: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., DataverseContext]]:
    """``make(**simulator_kwargs)``: a started simulator + registered app + session; stopped at teardown."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    contexts: list[DataverseContext] = []

    def make(**kwargs: Any) -> DataverseContext:
        context = connect_dataverse(simulator_factory(**kwargs))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.session.close()


@pytest.fixture
def dataverse(dataverse_factory: Callable[..., DataverseContext]) -> DataverseContext:
    """A started simulator's Dataverse: ``.session`` (authenticated requests.Session), ``.api``, ``.crm``,
    ``.org_url``, ``.tenant``, ``.client_id``, ``.client_secret``, ``.ca_path``, ``.authority``, ``.scope``."""
    return dataverse_factory()
