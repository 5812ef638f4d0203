"""Sinks turn tracking decisions into CRM activities. They are plug-ins found through the
``foldertrack.sinks`` entry-point group; the SQL sink is the default one."""
