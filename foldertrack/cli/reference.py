"""The README's command reference, generated from the click commands themselves.

``python -m foldertrack.cli.reference`` prints the table, ``… --write README.md`` replaces it in the README
(the table under "## Command reference"); a test compares the two, so a command, option or summary cannot
change without the README following.
"""

from __future__ import annotations

import click

from foldertrack.cli import main


def walk(group: click.Group, ctx: click.Context, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every leaf command under ``group`` as (``"records import"``, command), sorted by name."""
    out: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out += walk(command, ctx, path + " ")
        else:
            out.append((path, command))
    return out


def _usage(path: str, command: click.Command, ctx: click.Context) -> str:
    arguments = " ".join(p.make_metavar(ctx) for p in command.params if isinstance(p, click.Argument))
    return f"foldertrack {path}" + (f" {arguments}" if arguments else "")


def _options(command: click.Command) -> str:
    names = []
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            longest = max(param.opts, key=len)
            names.append(f"`{longest}`" + (f"/`{param.secondary_opts[0]}`" if param.secondary_opts else ""))
    return ", ".join(names)


def reference_markdown() -> str:
    """The command table: usage, the first line of the help, the options."""
    ctx = click.Context(main, info_name="foldertrack")
    rows = ["| command | what it does | options |", "|---|---|---|"]
    for path, command in walk(main, ctx):
        summary = " ".join((command.help or "").strip().split("\n\n")[0].split()).replace("|", "\\|")
        rows.append(f"| `{_usage(path, command, ctx)}` | {summary} | {_options(command)} |")
    return "\n".join(rows) + "\n"


HEADER = "| command | what it does | options |"
SECTION = "## Command reference"


def table_span(text: str) -> tuple[int, int]:
    """Where the README's command table starts and ends (the blank line after it)."""
    start = text.index(HEADER, text.index(SECTION))
    return start, text.index("\n\n", start) + 1


def update_readme(path: str) -> bool:
    """Replace the README's command table with the generated one; True when it changed."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start, end = table_span(text)
    new = text[:start] + reference_markdown() + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(new)
    return new != text


@click.command()
@click.option(
    "--write", "readme", metavar="README", help="Replace the table in this README instead of printing."
)
def _cli(readme: str | None) -> None:
    if readme:
        click.echo(f"{readme}: {'updated' if update_readme(readme) else 'already current'}")
    else:
        click.echo(reference_markdown(), nl=False)


if __name__ == "__main__":
    _cli()
