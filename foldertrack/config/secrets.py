"""Secrets: masked values, and where each is looked for (a file, an environment variable, a systemd credential)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class Secret:
    """A password or client secret: masked in ``str``/``repr``/f-strings; ``reveal()`` at the point of use.

    ``source`` says where it came from (``"file /run/…"``, ``"$FOLDERTRACK_EXCHANGE_PASSWORD"``), never what.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SecretSpec:
    """Where a secret is looked for, in order: a file named by a setting, an env var, a systemd credential."""

    section: str
    attr: str  # the dataclass field holding the resolved Secret
    file_key: str  # the setting naming a file that holds it
    env: str
    credential: str  # file name under $CREDENTIALS_DIRECTORY

    def describe(self) -> str:
        return (
            f"{self.section}.{self.file_key}, else ${self.env}, else $CREDENTIALS_DIRECTORY/{self.credential}"
        )


SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec("exchange", "password", "password_file", "FOLDERTRACK_EXCHANGE_PASSWORD", "exchange-password"),
    SecretSpec(
        "exchange",
        "oauth2_client_secret",
        "oauth2_client_secret_file",
        "FOLDERTRACK_EXCHANGE_CLIENT_SECRET",
        "exchange-client-secret",
    ),
    SecretSpec("webhook", "secret", "secret_file", "FOLDERTRACK_WEBHOOK_SECRET", "webhook-secret"),
    SecretSpec(
        "dataverse",
        "client_secret",
        "client_secret_file",
        "FOLDERTRACK_DATAVERSE_CLIENT_SECRET",
        "dataverse-client-secret",
    ),
    SecretSpec(
        "dataverse", "ntlm_password", "password_file", "FOLDERTRACK_DATAVERSE_PASSWORD", "dataverse-password"
    ),
    SecretSpec(
        "graph",
        "client_secret",
        "client_secret_file",
        "FOLDERTRACK_GRAPH_CLIENT_SECRET",
        "graph-client-secret",
    ),
)


def _read_secret_file(path: Path) -> str:
    text = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not text:
        raise ValueError("is empty")
    return text


def resolve_secret(spec: SecretSpec, file: Path | None, env: Mapping[str, str]) -> tuple[Secret | None, str]:
    """(secret, note): the note explains a missing secret. A configured file that is unreadable is not
    silently replaced by the next source."""
    if file is not None:
        try:
            return Secret(_read_secret_file(file), f"file {file}"), ""
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            return None, f"{spec.section}.{spec.file_key} {file}: cannot read secret ({reason})"
    if env.get(spec.env):
        return Secret(env[spec.env], f"${spec.env}"), ""
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / spec.credential
        if path.exists():
            try:
                return Secret(_read_secret_file(path), f"credential {spec.credential}"), ""
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                return None, f"{path}: cannot read secret ({reason})"
    return None, f"not set (looked in {spec.describe()})"
