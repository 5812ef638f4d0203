"""Several watcher instances on one database: who is alive, who watches which mailbox.

Each instance registers and heartbeats (:mod:`.instances`); mailboxes are split by leases on
``mailbox_leases`` (:mod:`.leases`), claimed with ``FOR UPDATE SKIP LOCKED``, timed by the database clock and
carrying an epoch (fencing token) bumped at every claim. :class:`LeaseKeeper` keeps this instance's fair
share and tells the daemon what it owns; :func:`assert_fenced` makes an ownership-dependent write fail once
the lease was taken over. On SQLite (one host) only one live watcher may use a database.
"""

from __future__ import annotations

from foldertrack.fleet.fence import assert_fenced
from foldertrack.fleet.instances import InstanceIdentity
from foldertrack.fleet.keeper import FleetOptions, LeaseKeeper
from foldertrack.fleet.session import guard_sessions
from foldertrack.fleet.status import fleet_status

__all__ = [
    "FleetOptions",
    "InstanceIdentity",
    "LeaseKeeper",
    "assert_fenced",
    "fleet_status",
    "guard_sessions",
]
