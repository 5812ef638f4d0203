"""A Dataverse Web API v9.2 (Dynamics 365) in memory: ``sim.crm`` behind ``{sim.https_base}/api/data/v9.2/``.

It enforces the real table metadata from ``../shared/dataverse`` (see ``metadata``), answers with
Dataverse's error codes (``errors``), pages and tracks changes like Dataverse (``query``), and can be
throttled, slowed down or taken down on demand (``faults``).
"""

from foldertrack.simulator.dataverse.faults import DataverseFaults
from foldertrack.simulator.dataverse.metadata import MetadataMissing, load_tables
from foldertrack.simulator.dataverse.store import Crm

__all__ = ["Crm", "DataverseFaults", "MetadataMissing", "load_tables"]
