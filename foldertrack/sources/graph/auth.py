"""App-only tokens for Microsoft Graph: MSAL client credentials (secret or certificate).

https://learn.microsoft.com/graph/auth-v2-service. The scope is ``https://graph.microsoft.com/.default``
(the app's ``Mail.Read`` / ``Mail.ReadWrite`` application permissions). The token logic, HTTP session and
certificate reader are the Dataverse client's (:class:`foldertrack.crm.auth.MsalAuthenticator`), so TLS
verification, timeouts, caching and masking behave the same; only the scope, the name in messages and the
error raised differ.
"""

from __future__ import annotations

from foldertrack.crm.auth import AppAuthenticator
from foldertrack.sources.graph.errors import GraphAuthError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class GraphAuthenticator(AppAuthenticator):
    default_scope = GRAPH_SCOPE
    label = "Graph"
    error = GraphAuthError
