"""The Microsoft Graph v1.0 mail endpoints of the simulator, on the same in-memory mailboxes as EWS.

``sim.graph`` (:class:`~.service.GraphService`) holds the Graph-only state: immutable ids, subscriptions
and their notifier, faults. Requests arrive through ``simulator/routes.py`` under ``/v1.0/`` on both
listeners (:mod:`.http`).
"""

from foldertrack.simulator.graph.service import GRAPH_RESOURCE, GraphService

__all__ = ["GRAPH_RESOURCE", "GraphService"]
