"""The ``foldertrack`` command: a thin click layer over the library.

Sub-commands live one per module and are imported lazily, so ``foldertrack --help`` stays fast.
Only this layer turns a :class:`~foldertrack.errors.FoldertrackError` into a one-line message and an exit
code; an unexpected exception is one line too, with the traceback only under ``--debug``. Output cut short
by its reader (``foldertrack activities | head``) ends quietly with exit 0. Global options may be written
before or after the sub-command (:mod:`foldertrack.cli.argv`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from foldertrack import __version__
from foldertrack.cli.argv import reorder
from foldertrack.errors import FoldertrackError

#: command name → "module:attribute"; each module owns one command or command group.
COMMANDS: dict[str, str] = {
    "activities": "foldertrack.cli.activities_cmd:activities",
    "config": "foldertrack.cli.config_cmd:config",
    "conflicts": "foldertrack.cli.explain_cmd:conflicts",
    "db": "foldertrack.cli.db_cmd:db",
    "demo": "foldertrack.cli.demo_cmd:demo",
    "explain": "foldertrack.cli.explain_cmd:explain",
    "folders": "foldertrack.cli.folders_cmd:folders",
    "records": "foldertrack.cli.records_cmd:records",
    "retry": "foldertrack.cli.retry_cmd:retry",
    "rules": "foldertrack.cli.rules_cmd:rules",
    "run": "foldertrack.cli.run_cmd:run",
    "simulator": "foldertrack.cli.simulator_cmd:simulator",
    "simctl": "foldertrack.cli.simulator_ctl_cmd:simctl",
    "status": "foldertrack.cli.status_cmd:status",
}

#: group name → "module:attribute" of commands added to a group another module owns
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "records": ("foldertrack.cli.records_delete_cmd:delete",),
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
        command = _load(target)
        if isinstance(command, click.Group):
            for extra in SUBCOMMANDS.get(cmd_name, ()):
                sub = _load(extra)
                if sub is not None and sub.name not in command.commands:
                    command.add_command(sub)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, reorder(self, ctx, args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # the reader went away (`| head`): that is how pipes end, not an error
            _silence_stdout()
            ctx.exit(0)
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


def _load(target: str) -> click.Command | None:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # command not built yet in this checkout
        raise
    return getattr(module, attr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (CliRunner)
        pass


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="FOLDERTRACK_DEBUG", help="Show tracebacks and debug logs.")
@click.option("--config", "config_path", metavar="PATH", help="Same as the sub-command's --config.")
@click.option("--database-url", metavar="URL", help="Same as the sub-command's --database-url.")
@click.option("--json", "as_json", is_flag=True, help="Same as the sub-command's --json.")
@click.version_option(__version__, prog_name="foldertrack")
@click.pass_context
def main(
    ctx: click.Context, debug: bool, config_path: str | None, database_url: str | None, as_json: bool
) -> None:
    """Track Exchange mails into a CRM by moving them into folders.

    --debug, --config, --database-url and --json may be written before or after the sub-command.
    Shell completion: eval "$(_FOLDERTRACK_COMPLETE=bash_source foldertrack)" (zsh_source, fish_source).
    """
    given = [
        name
        for name, value in (("--config", config_path), ("--database-url", database_url), ("--json", as_json))
        if value
    ]
    if given:  # argv.reorder left them here: the sub-command does not take them
        command = ctx.invoked_subcommand or "(none)"
        raise click.UsageError(f"{given[0]} does not apply to `foldertrack {command}`")
    ctx.meta["foldertrack.debug"] = debug
    if debug:
        from foldertrack.ops.logs import setup_logging  # masks registered secrets, quiets exchangelib

        setup_logging("DEBUG")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}
