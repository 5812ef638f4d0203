"""Talking to Dataverse (Dynamics 365): the Web API client and its credentials, shared by the
``dataverse`` sink and ``records sync``."""

from foldertrack.crm.client import DataverseClient, Page
from foldertrack.crm.connect import connect, connection_problems

__all__ = ["DataverseClient", "Page", "connect", "connection_problems"]
