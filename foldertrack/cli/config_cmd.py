"""``foldertrack config check``: show the effective configuration, secrets masked (TOML or ``--json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from foldertrack.cli.common import config_option, json_option
from foldertrack.config import (
    SECRETS,
    SECTIONS,
    SETTINGS,
    Config,
    format_duration,
    format_size,
    load_config,
    render_config,
)
from foldertrack.config.model import DatabaseConfig
from foldertrack.errors import ConfigError

EXIT_INVALID = 1


@click.group()
def config() -> None:
    """Inspect the configuration file."""


@config.command("check")
@config_option
@json_option
@click.pass_context
def check(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Validate the configuration and print it with defaults filled in and secrets masked.

    Exits 1 when the file is invalid. What is still missing to connect to Exchange (endpoint, username,
    password) is printed as warnings: credentials often exist only inside the service.
    """
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:  # a checker exits 1 like `rules check`; `run` exits with EX_CONFIG
        if as_json:
            click.echo(json.dumps({"valid": False, "problems": str(exc).splitlines()}, indent=2))
        else:
            for line in str(exc).splitlines():
                click.echo(f"error: {line}", err=True)
        ctx.exit(EXIT_INVALID)
    warnings = cfg.exchange.connection_problems()
    if as_json:
        click.echo(json.dumps(config_json(cfg, warnings), indent=2, ensure_ascii=False))
        return
    click.echo(render_config(cfg))
    for problem in warnings:
        click.echo(f"warning: {problem}", err=True)


def config_json(cfg: Config, warnings: list[str]) -> dict[str, Any]:
    """``{valid, source, settings: {name: {value, default}}, secrets: {name: {set, source}}, warnings}``;
    durations and sizes as in the file (``"60s"``, ``"5MiB"``), a database password masked."""
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        value = getattr(getattr(cfg, setting.section), setting.key)
        settings[setting.name] = {
            "value": _plain(setting, value),
            "default": setting.name not in cfg.explicit_keys,
        }
    secrets: dict[str, Any] = {}
    notes = dict(cfg.exchange.secret_notes)
    for spec in SECRETS:
        secret = getattr(getattr(cfg, spec.section), spec.attr)
        secrets[f"{spec.section}.{spec.attr}"] = {
            "set": secret is not None,
            "source": str(secret.source) if secret is not None else notes.get(spec.attr),
        }
    return {
        "valid": True,
        "source": str(cfg.source) if cfg.source else None,
        "sections": list(SECTIONS),
        "settings": settings,
        "secrets": secrets,
        "warnings": warnings,
    }


def _plain(setting: Any, value: Any) -> Any:
    if value is None:
        return None
    if setting.kind.unit == "duration":
        return format_duration(value)
    if setting.kind.unit == "size":
        return format_size(value)
    if setting.name == "database.url":
        return DatabaseConfig(value).display_url
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return (
            {k: v for k, v in value}
            if all(isinstance(p, tuple) and len(p) == 2 for p in value)
            else list(value)
        )
    return value
