"""The Dataverse (Dynamics 365) activity sink, entry point ``dataverse`` in ``foldertrack.sinks``."""

from foldertrack.sinks.dataverse.payload import ACTIVITY_NAMESPACE, activity_id
from foldertrack.sinks.dataverse.sink import DataverseActivitySink

__all__ = ["ACTIVITY_NAMESPACE", "DataverseActivitySink", "activity_id"]
