"""An EWS server with in-memory mailboxes that unmodified exchangelib cannot tell from Exchange.

>>> from foldertrack.simulator import Simulator, MailSpec
>>> with Simulator() as sim:
...     mb = sim.add_mailbox("alice@example.com", password="pw")
...     item_id = sim.deliver("alice@example.com", MailSpec(subject="Hi", to=["alice@example.com"]))
...     len(mb.items("Inbox"))
1
"""

from foldertrack.simulator.faults import Faults
from foldertrack.simulator.mime import MailSpec, ParsedMail, build_mime, parse_mime
from foldertrack.simulator.model import EwsError
from foldertrack.simulator.profiles import PROFILES, ServerProfile
from foldertrack.simulator.simulator import ItemSummary, MailboxHandle, Simulator

__all__ = [
    "PROFILES",
    "EwsError",
    "Faults",
    "ItemSummary",
    "MailSpec",
    "MailboxHandle",
    "ParsedMail",
    "ServerProfile",
    "Simulator",
    "build_mime",
    "parse_mime",
]
