"""Looking at the Exchange side without running the watcher: folder trees, online rule checks, previews
and rule suggestions. Everything here only reads: no folder, item, sync state or database row changes.

Modules: ``exchange`` (read-only EWS access through the watcher's own connector), ``folders`` (a
mailbox's tree annotated with the rules), ``check`` (``rules check --online``), ``preview`` (what a
backfill would take now), ``suggest`` (a starting rules file), ``progress`` (done/total callbacks).
"""
