"""Web API names of tables and relationships: entity sets (``accounts``), navigation properties
(``regardingobjectid_account_email``, ``partyid_contact``).

Standard tables have fixed entity sets. A custom table's entity set is its plural logical collection name,
which is usually the logical name pluralised (``new_project`` → ``new_projects``); when it is not, the
``dataverse.entity_sets`` setting names it.

Reference: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-types-operations
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

STANDARD_ENTITY_SETS: dict[str, str] = {
    "account": "accounts",
    "contact": "contacts",
    "lead": "leads",
    "opportunity": "opportunities",
    "incident": "incidents",
    "systemuser": "systemusers",
    "queue": "queues",
    "email": "emails",
    "activityparty": "activityparties",
    "activitymimeattachment": "activitymimeattachments",
}


def pluralise(logical: str) -> str:
    """English plural as Dataverse forms default collection names (category → categories)."""
    if logical.endswith("y") and len(logical) > 1 and logical[-2] not in "aeiou":
        return logical[:-1] + "ies"
    if logical.endswith(("s", "x", "z", "ch", "sh")):
        return logical + "es"
    return logical + "s"


class EntityNames:
    """Entity sets by logical name: the standard ones, the configured ones, else the plural."""

    def __init__(self, configured: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._sets = dict(STANDARD_ENTITY_SETS)
        if configured:
            self._sets.update(dict(configured))

    def entity_set(self, logical: str) -> str:
        return self._sets.get(logical) or pluralise(logical)

    def bind(self, logical: str, record_id: str) -> str:
        """The ``@odata.bind`` value of a record: ``/accounts(GUID)``."""
        return f"/{self.entity_set(logical)}({record_id})"


def regarding_property(logical: str) -> str:
    """The email's single-valued navigation property to a regarding record of table ``logical``."""
    return f"regardingobjectid_{logical}_email"


def party_property(logical: str) -> str:
    """The activity party's navigation property to a party record of table ``logical``."""
    return f"partyid_{logical}"
