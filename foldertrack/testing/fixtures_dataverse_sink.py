"""Fixtures for the Dataverse sink and ``records sync``: a foldertrack configuration whose ``[dataverse]``
section points at the simulator's Dataverse (HTTPS with the simulator's CA, MSAL against its token
endpoint, the app's secret from the environment mapping, as in production)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from foldertrack.config import Config, parse_config

__all__ = ["dataverse_config", "dataverse_sink", "make_dataverse_config"]


def make_dataverse_config(context: Any, secret: str | None = None, **settings: Any) -> Config:
    """A Config for the simulated Dataverse of ``context`` (a ``DataverseContext``); ``settings`` override
    ``[dataverse]`` keys; ``secret`` replaces the app's client secret (e.g. a wrong one)."""
    section = {
        "url": context.org_url,
        "tenant_id": context.tenant,
        "client_id": context.client_id,
        "authority": context.sim.https_base,
        "ca_file": context.ca_path,
        **settings,
    }
    section = {k: v for k, v in section.items() if v is not None}  # None: leave the setting unset
    env = {"FOLDERTRACK_DATAVERSE_CLIENT_SECRET": context.client_secret if secret is None else secret}
    return parse_config({"dataverse": section}, env=env)


@pytest.fixture
def dataverse_config(dataverse: Any) -> Config:
    """``[dataverse]`` pointing at the ``dataverse`` fixture's simulator."""
    return make_dataverse_config(dataverse)


@pytest.fixture
def dataverse_sink(dataverse_config: Config) -> Iterator[Any]:
    """A :class:`~foldertrack.sinks.dataverse.DataverseActivitySink` on the simulator; closed afterwards."""
    from foldertrack.sinks.dataverse import DataverseActivitySink

    sink = DataverseActivitySink.create(dataverse_config, None)
    yield sink
    sink.close()
