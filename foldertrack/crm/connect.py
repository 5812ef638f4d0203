"""Building the Dataverse client from ``[dataverse]``: one place for the sink, ``records sync`` and ``run``."""

from __future__ import annotations

from typing import Any

from foldertrack.crm.auth import Authenticator, CertificateCredential, MsalAuthenticator, NtlmAuthenticator
from foldertrack.crm.client import DataverseClient
from foldertrack.errors import ConfigError


def connection_problems(config: Any) -> list[str]:
    """What is missing in ``[dataverse]`` to connect (empty when ready)."""
    dv = config.dataverse
    notes = dict(config.exchange.secret_notes)
    problems = [] if dv.url else ["dataverse.url is not set"]
    if dv.auth == "oauth2":
        for key in ("tenant_id", "client_id"):
            if not getattr(dv, key):
                problems.append(f'dataverse.{key} is not set (needed for auth = "oauth2")')
        if dv.certificate_file is None and dv.client_secret is None:
            problems.append(
                f"dataverse client secret is {notes.get('client_secret', 'not set')} "
                "(or set dataverse.certificate_file)"
            )
    else:
        if not dv.username:
            problems.append('dataverse.username is not set (needed for auth = "ntlm")')
        if dv.ntlm_password is None:
            problems.append(f"dataverse password is {notes.get('ntlm_password', 'not set')}")
    return problems


def authenticator(config: Any) -> Authenticator:
    dv = config.dataverse
    verify: bool | str = str(dv.ca_file) if dv.ca_file else True
    if dv.auth == "ntlm":
        return NtlmAuthenticator(dv.username, dv.ntlm_password.reveal())
    credential = (
        CertificateCredential(dv.certificate_file) if dv.certificate_file else dv.client_secret.reveal()
    )
    return MsalAuthenticator(
        dv.url,
        dv.tenant_id,
        dv.client_id,
        credential,
        authority=dv.authority,
        verify=verify,
        timeout=dv.timeout,
    )


def connect(config: Any) -> DataverseClient:
    """A client for ``config.dataverse``; ConfigError listing everything missing. Makes no request yet."""
    problems = connection_problems(config)
    if problems:
        raise ConfigError("\n".join(problems))
    dv = config.dataverse
    return DataverseClient(
        dv.url,
        authenticator(config),
        api_version=dv.api_version,
        verify=str(dv.ca_file) if dv.ca_file else True,
        timeout=dv.timeout,
        max_concurrency=dv.max_concurrency,
    )
