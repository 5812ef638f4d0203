"""Watching mailboxes: streaming notifications, the polling fallback, the work dispatcher and the daemon."""
