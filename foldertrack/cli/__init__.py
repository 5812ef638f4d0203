"""The ``foldertrack`` command: a thin click layer over the library.

Sub-commands live one per module and are imported lazily, so ``foldertrack --help`` stays fast.
Only this layer turns a :class:`~foldertrack.errors.FoldertrackError` into a one-line message and an exit
code; an unexpected exception is one line too, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from foldertrack import __version__
from foldertrack.errors import FoldertrackError

#: command name → "module:attribute"; each module owns one command or command group.
COMMANDS: dict[str, str] = {
    "activities": "foldertrack.cli.activities_cmd:activities",
    "config": "foldertrack.cli.config_cmd:config",
    "db": "foldertrack.cli.db_cmd:db",
    "demo": "foldertrack.cli.demo_cmd:demo",
    "records": "foldertrack.cli.records_cmd:records",
    "retry": "foldertrack.cli.retry_cmd:retry",
    "rules": "foldertrack.cli.rules_cmd:rules",
    "run": "foldertrack.cli.run_cmd:run",
    "simulator": "foldertrack.cli.simulator_cmd:simulator",
    "status": "foldertrack.cli.status_cmd:status",
}

EXIT_INTERNAL = 70  # EX_SOFTWARE


class LazyGroup(click.Group):
    """Imports a sub-command's module only when that command is used (or help lists it)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # command not built yet in this checkout
            raise
        return getattr(module, attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except FoldertrackError as exc:
            if ctx.meta.get("foldertrack.debug"):
                raise
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {line}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            ctx.exit(130)
        except Exception as exc:  # one line, never a traceback, unless --debug
            if ctx.meta.get("foldertrack.debug"):
                raise
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="FOLDERTRACK_DEBUG", help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="foldertrack")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Track Exchange mails into a CRM by moving them into folders."""
    ctx.meta["foldertrack.debug"] = debug
    if debug:
        from foldertrack.ops.logs import setup_logging  # masks registered secrets, quiets exchangelib

        setup_logging("DEBUG")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}
