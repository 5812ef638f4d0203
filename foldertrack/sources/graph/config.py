"""The Graph source from ``[graph]``: MSAL client credentials (secret or certificate), the thin client,
per-mailbox throttle. Raises ConfigError listing everything missing."""

from __future__ import annotations

from typing import Any

from foldertrack.crm.auth import CertificateCredential
from foldertrack.errors import ConfigError
from foldertrack.sources.graph.auth import GraphAuthenticator
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.source import GraphSource
from foldertrack.sources.graph.throttle import MailboxThrottle

#: a worker never waits longer than this for a mailbox's Retry-After: the dispatcher re-schedules instead
MAX_THROTTLE_WAIT = 1.0


def graph_source(config: Any, engine: Any = None) -> GraphSource:
    graph = config.graph
    problems = graph.connection_problems()
    if problems:
        raise ConfigError("\n".join(problems))
    verify: bool | str = str(graph.ca_file) if graph.ca_file else True
    if graph.certificate_file is not None:
        credential: str | CertificateCredential = CertificateCredential(graph.certificate_file)
    else:
        credential = graph.client_secret.reveal()
    auth = GraphAuthenticator(
        graph.tenant_id, graph.client_id, credential, authority=graph.authority, verify=verify
    )
    client = GraphClient(
        auth, base_url=graph.base_url, verify=verify, throttle=MailboxThrottle(max_wait=MAX_THROTTLE_WAIT)
    )
    return GraphSource(client, page_size=graph.page_size, engine=engine)
