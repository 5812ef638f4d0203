"""Looking at the Exchange side without running the watcher: folder trees, online rule checks, previews
and rule suggestions. Everything here only reads: no folder, item, sync state or database row changes.

Modules: ``reader`` (the ``MailboxReader`` interface; ``open_reader`` picks EWS or Graph by
``exchange.source``), ``exchange`` (read-only EWS access through the watcher's own connector, and the data
types), ``graph_reader`` (the same through Microsoft Graph), ``folders`` (a mailbox's tree annotated with
the rules), ``check`` (``rules check --online``), ``preview`` (what a backfill would take now), ``suggest``
(a starting rules file), ``conflicts`` (mails tracked from two mailboxes).
"""
