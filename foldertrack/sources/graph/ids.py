"""Moving a deployment from EWS to Graph: translate the EWS folder (and item) ids the state database
pinned into Graph ids with ``translateExchangeIds``, instead of re-resolving every rule by path.

https://learn.microsoft.com/graph/api/user-translateexchangeids (at most 1,000 ids per request).
"""

from __future__ import annotations

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.delta import user_path

MAX_IDS_PER_REQUEST = 1000


def translate_ids(
    client: GraphClient,
    mailbox: str,
    ids: list[str],
    source: str = "ewsId",
    target: str = "restImmutableEntryId",
) -> dict[str, str | None]:
    """``{input id: Graph id}``; None for an id the server could not convert (deleted, malformed)."""
    out: dict[str, str | None] = {}
    for start in range(0, len(ids), MAX_IDS_PER_REQUEST):
        chunk = ids[start : start + MAX_IDS_PER_REQUEST]
        body = client.request(
            "POST",
            mailbox,
            f"{user_path(mailbox)}/translateExchangeIds",
            json={"inputIds": chunk, "sourceIdType": source, "targetIdType": target},
        )
        for result in body.get("value", []):
            out[str(result.get("sourceId"))] = result.get("targetId")
    for missing in ids:
        out.setdefault(missing, None)
    return out
