"""Delivery to external sinks: the outbox written by sync, and the workers that feed the sink from it.

Modules: :mod:`~foldertrack.delivery.outbox` (the table's queries), :mod:`~foldertrack.delivery.decisions`
(what sync writes), :mod:`~foldertrack.delivery.rebuild` (the activity sent, from the local tables),
:mod:`~foldertrack.delivery.service` and :mod:`~foldertrack.delivery.worker` (the threads),
:mod:`~foldertrack.delivery.wiring` (building it from the configuration), ``feedback`` (mailbox
categories after the CRM confirms).
"""
