"""Global options accepted before or after the sub-command, by rewriting the argument list once.

click binds an option to the command it is written after. Scripts write ``foldertrack --json status``
and ``foldertrack status --debug`` alike, so before parsing:

- ``--config``, ``--database-url`` and ``--json`` written before the sub-command move to the end of the
  innermost command's arguments (before a ``--``) when that command takes them; otherwise they stay with
  the group, which rejects them with a message naming the command;
- ``--debug`` written after the sub-command moves to the front, where the group reads it.
"""

from __future__ import annotations

import click

#: options a sub-command may take that may also be written before it (name → takes a value)
FORWARDED: dict[str, bool] = {"--config": True, "--database-url": True, "--json": False}
#: the group's own options that take a value (skipped with their value while looking for the command)
GROUP_VALUE_OPTIONS = frozenset(name for name, takes in FORWARDED.items() if takes)
DEBUG = "--debug"


def reorder(group: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """``args`` with the global options moved where click can parse them (see the module docstring)."""
    args = list(args)
    position = _command_position(args)
    if position is None:
        return args
    leaf, leaf_start = _leaf(group, ctx, args, position)
    if leaf is None:
        return args
    leaf_opts = {opt for p in leaf.params for opt in (*p.opts, *p.secondary_opts)}
    front: list[str] = []
    moved: list[str] = []
    i = 0
    while i < position:
        token = args[i]
        name, has_value = token.partition("=")[0], "=" in token
        if name in FORWARDED and name in leaf_opts:
            take = 2 if FORWARDED[name] and not has_value and i + 1 < position else 1
            moved += args[i : i + take]
            i += take
            continue
        if name in GROUP_VALUE_OPTIONS and not has_value:
            front += args[i : i + 2]
            i += 2
            continue
        front.append(token)
        i += 1
    rest = args[position:]
    if DEBUG not in leaf_opts:
        rest, found = _pull_debug(rest, leaf, leaf_start - position)
        if found and DEBUG not in front:
            front.insert(0, DEBUG)
    end = rest.index("--") if "--" in rest else len(rest)
    return front + rest[:end] + moved + rest[end:]


def _command_position(args: list[str]) -> int | None:
    """Index of the sub-command's name: the first token that is not a group option (or its value)."""
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return None
        if not token.startswith("-"):
            return i
        i += 2 if token in GROUP_VALUE_OPTIONS else 1
    return None


def _leaf(
    group: click.Group, ctx: click.Context, args: list[str], position: int
) -> tuple[click.Command | None, int]:
    """The innermost command the arguments name (``records list``), and where its own arguments start."""
    command = group.get_command(ctx, args[position])
    i = position + 1
    while isinstance(command, click.Group):
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            i += 1  # intermediate groups only take --help
        if i >= len(args) or args[i] == "--":
            break
        sub = command.get_command(ctx, args[i])
        if sub is None:
            break
        command, i = sub, i + 1
    return command, i


def _pull_debug(rest: list[str], leaf: click.Command, leaf_offset: int) -> tuple[list[str], bool]:
    """``rest`` without ``--debug`` tokens that are options (not another option's value, not after --)."""
    takes_value = {
        opt
        for p in leaf.params
        if isinstance(p, click.Option) and not p.is_flag and not p.count
        for opt in p.opts
    }
    out: list[str] = []
    found = False
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "--":
            out += rest[i:]
            break
        if token == DEBUG and i >= leaf_offset:
            found = True
            i += 1
            continue
        out.append(token)
        if i >= leaf_offset and token in takes_value and i + 1 < len(rest):
            out.append(rest[i + 1])
            i += 2
            continue
        i += 1
    return out, found
