"""Derived views of the settings table: ``config check``'s effective TOML and the README reference table."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from foldertrack.config.model import SECTION_CLASSES, Config, DatabaseConfig
from foldertrack.config.secrets import SECRETS, Secret
from foldertrack.config.settings import SECTIONS, SETTINGS, Setting
from foldertrack.config.units import format_duration, format_size


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):  # pairs: an inline table (dataverse.entity_sets)
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _display(setting: Setting, value: Any) -> str:
    if setting.kind.unit == "duration":
        return _toml_value(format_duration(value))
    if setting.kind.unit == "size":
        return _toml_value(format_size(value))
    if setting.name == "database.url":
        return _toml_value(DatabaseConfig(value).display_url)
    return _toml_value(value)


def render_config(config: Config) -> str:
    """The effective configuration as TOML, secrets masked, defaults marked: ``config check``'s output."""
    out = [f"# effective configuration from {config.source or 'built-in defaults (no file)'}"]
    for section in SECTIONS:
        out.append(f"\n[{section}]")
        section_obj = getattr(config, section)
        for setting in (s for s in SETTINGS if s.section == section):
            value = getattr(section_obj, setting.key)
            if value is None:
                out.append(f"# {setting.key} is not set")
            else:
                comment = "" if setting.name in config.explicit_keys else "  # default"
                out.append(f"{setting.key} = {_display(setting, value)}{comment}")
        for spec in (s for s in SECRETS if s.section == section):
            secret: Secret | None = getattr(section_obj, spec.attr)
            if secret is not None:
                out.append(f"# {spec.attr}: *** (from {secret.source})")
            else:
                out.append(f"# {spec.attr}: {dict(config.exchange.secret_notes).get(spec.attr)}")
    return "\n".join(out)


def settings_markdown() -> str:
    """The README's configuration reference table, one row per setting."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = s.default_doc or ("unset" if s.default is None else f"`{_toml_value(s.default)}`")
        rows.append(f"| `{s.name}` | {s.kind.name} | {default} | {s.help} |")
    return "\n".join(rows)


def check_declarations() -> None:
    """Fail at import if a section dataclass and the settings table disagree (they are one declaration)."""
    for name, cls in SECTION_CLASSES.items():
        declared = {s.key for s in SETTINGS if s.section == name}
        extra = {spec.attr for spec in SECRETS if spec.section == name}
        extra |= {"secret_notes"} if name == "exchange" else set()
        actual = {f.name for f in fields(cls)}
        if actual != declared | extra:
            raise RuntimeError(
                f"[{name}] settings and {cls.__name__} fields differ: {actual ^ (declared | extra)}"
            )
