"""A few CRM records for ``foldertrack simulator --seed-crm`` and the demo: accounts with numbers and
addresses, contacts and a lead that pattern rules and party resolution can find."""

from __future__ import annotations

from foldertrack.simulator.dataverse.store import Crm

DEMO_ACCOUNTS = (
    ("Contoso Ltd", "C-1001", "info@contoso.com"),
    ("Fabrikam Inc", "F-2002", "sales@fabrikam.com"),
    ("Northwind Traders", "N-3003", "orders@northwind.example"),
)
DEMO_CONTACTS = (
    ("Jane Doe", "jane@contoso.com", "Contoso Ltd"),
    ("Sam Smith", "sam@fabrikam.com", "Fabrikam Inc"),
)
DEMO_LEADS = (("Lee Prospect", "lee@prospects.example", "Prospects Inc"),)


def seed_demo(crm: Crm) -> dict[str, str]:
    """Create the demo records; returns ``{name: id}``."""
    ids: dict[str, str] = {}
    for name, number, email in DEMO_ACCOUNTS:
        ids[name] = crm.add_account(name, number, email)
    for name, email, account in DEMO_CONTACTS:
        ids[name] = crm.add_contact(name, email, account=ids[account])
    for name, email, company in DEMO_LEADS:
        ids[name] = crm.add_lead(name, email, company=company)
    return ids
