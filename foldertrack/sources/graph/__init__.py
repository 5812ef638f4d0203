"""The Microsoft Graph mail source: a thin client on ``requests`` + MSAL client credentials.

Modules: :mod:`.client` (HTTP, auth, errors), :mod:`.throttle` (Retry-After and 4 concurrent requests per
mailbox), :mod:`.delta` (delta chains, the whole link as cursor), :mod:`.folders` (path → id, folder tree),
:mod:`.items` (message + attachments → :class:`~foldertrack.model.Activity`).
"""
