"""Bearer tokens on EWS, checked as Exchange Online checks them: audience ``https://outlook.office365.com``,
app-only tokens need the ``full_access_as_app`` role; a refused token gets Exchange's 401 (or 403) with
``WWW-Authenticate: Bearer …`` and ``x-ms-diagnostics: CODE;reason="…";error_category="…"``.
"""

from __future__ import annotations

from foldertrack.simulator.identity import (
    EXCHANGE_RESOURCE,
    FULL_ACCESS_AS_APP,
    BadSignature,
    Identity,
    InvalidToken,
    TokenExpired,
    WrongAudience,
)
from foldertrack.simulator.store import Principal

#: Exchange Online's bearer challenge, as it sends it with every refused token
BEARER_CHALLENGE = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.windows.net/common/oauth2/authorize", error="invalid_token"'
)


class BearerRefused(Exception):
    """Exchange's answer to a bearer token it does not take: HTTP ``status`` and ``x-ms-diagnostics``."""

    def __init__(self, status: int, code: int, reason: str, category: str):
        super().__init__(reason)
        self.status, self.code, self.reason, self.category = status, code, reason, category

    def diagnostics(self) -> str:
        return f'{self.code};reason="{self.reason}";error_category="{self.category}"'


def check_bearer(identity: Identity, base: str, token: str) -> Principal:
    """An app-only token of the simulator's token endpoint, checked as Exchange Online checks it.

    Wording: Exchange's own ``x-ms-diagnostics`` reasons (``2000003`` invalid_resource, ``2000008``
    invalid_grant as seen from Exchange Online; ``2000001`` invalid_token for expired, badly signed
    or unreadable tokens). Behind plain HTTP, Exchange sees another audience host (TLS offloading
    breaks OAuth), so the plain listener refuses every token that way.

    ``base`` is the URL the server is reached at; raises :class:`BearerRefused` for a token Exchange would
    refuse, returns the app's principal otherwise."""
    if not base.startswith("https://"):
        raise BearerRefused(
            401,
            2000003,
            "The hostname component of the audience claim value is invalid. "
            f"Expected '{base}'. Actual '{EXCHANGE_RESOURCE}'.",
            "invalid_resource",
        )
    try:
        claims = identity.validate(token, EXCHANGE_RESOURCE)
    except TokenExpired:
        raise BearerRefused(401, 2000001, "The token has expired.", "invalid_token") from None
    except WrongAudience as exc:
        reason = (
            "The hostname component of the audience claim value is invalid. "
            f"Expected '{EXCHANGE_RESOURCE}'. Actual '{exc.audience}'."
            if "://" in exc.audience
            else "The audience claim value is invalid 'aud'."
        )
        raise BearerRefused(401, 2000003, reason, "invalid_resource") from None
    except BadSignature:
        raise BearerRefused(401, 2000001, "The token has an invalid signature.", "invalid_token") from None
    except InvalidToken:
        raise BearerRefused(
            401, 2000001, "OAuth token submitted with the request can not be parsed.", "invalid_token"
        ) from None
    roles = claims.get("roles") or []
    if not roles:
        raise BearerRefused(
            401,
            2000008,
            "The token contains no permissions, or permissions can not be understood.",
            "invalid_grant",
        )
    if FULL_ACCESS_AS_APP not in roles:
        raise BearerRefused(
            403, 2000008, "The token contains not enough scope to make this call.", "invalid_grant"
        )
    return Principal(f"app:{claims['appid']}", None, True)
