"""The one error hierarchy: the library raises these, only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class FoldertrackError(Exception):
    """Root of every error foldertrack raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(FoldertrackError):
    """The configuration file or environment is wrong; restarting will not help (systemd: EX_CONFIG)."""

    exit_code = 78


@dataclass(frozen=True)
class RuleProblem:
    """One problem in one rule file, reported as ``path:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class RuleError(FoldertrackError):
    """A rule set is invalid; carries every problem found, across all files."""

    exit_code = 1

    def __init__(self, problems: list[RuleProblem]):
        self.problems = sorted(problems, key=lambda p: (p.path, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid rules")


class DatabaseError(FoldertrackError):
    """The state database is unreachable or unusable."""

    exit_code = 75  # EX_TEMPFAIL: systemd may restart


class SchemaOutOfDateError(DatabaseError):
    """The database schema is older (or newer) than this foldertrack; ``foldertrack db upgrade`` fixes it."""

    exit_code = 78


class RecordImportError(FoldertrackError):
    """A record CSV has bad rows; the message names each line."""


class SinkError(FoldertrackError):
    """Writing an activity failed."""


class TransientSinkError(SinkError):
    """Writing failed for a reason that may pass (database restart, HTTP 429/503, timeout): retry with
    backoff. ``retry_after`` (seconds, from ``Retry-After``) is the least the retry waits; ``code`` is the
    CRM's own error code when it named one."""

    exit_code = 75

    def __init__(self, message: str, retry_after: float | None = None, code: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class PermanentSinkError(SinkError):
    """Writing this item can never succeed as it is (bad data): dead-letter it with the CRM's own message
    (``code`` is its error code, e.g. Dataverse ``0x80040216``), carry on."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class ExchangeError(FoldertrackError):
    """Talking to Exchange failed in a way the caller should report (bad credentials, folder missing)."""

    exit_code = 75


class InstanceConflictError(FoldertrackError):
    """Another live watcher already runs on this SQLite database (one per database: use PostgreSQL for
    several); the message names the database file and the other instance's host and pid."""

    exit_code = 75  # EX_TEMPFAIL: systemd may try again once the other one is gone


class LeaseLostError(FoldertrackError):
    """This instance no longer holds the mailbox's lease at the epoch it wrote under (taken over, expired or
    released): the transaction is refused so a paused or partitioned instance cannot overwrite its successor.
    """

    exit_code = 75

    def __init__(self, message: str, mailbox: str, epoch: int):
        super().__init__(message)
        self.mailbox = mailbox
        self.epoch = epoch
