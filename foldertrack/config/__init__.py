"""Configuration: one TOML file, every setting declared once in :data:`SETTINGS`.

The validator, ``foldertrack config check`` and the README's configuration table are all derived from
that table, so a setting cannot exist in one and be missing from another. Loading is a pure function of
the file's text and an environment mapping; secrets are wrapped in :class:`Secret` so they cannot leak
through ``repr``, logs or error messages.

Modules: ``units`` (durations, sizes), ``secrets``, ``kinds`` (value checks), ``settings`` (the table),
``model`` (the loaded sections), ``loader`` (TOML → Config), ``render`` (derived views).
"""

from foldertrack.config.kinds import Kind
from foldertrack.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    default_database_url,
    load_config,
    locate_config,
    parse_config,
)
from foldertrack.config.model import (
    SECTION_CLASSES,
    Config,
    DatabaseConfig,
    ExchangeConfig,
    MetricsConfig,
    RulesConfig,
    SinkConfig,
    WatchConfig,
)
from foldertrack.config.render import check_declarations, render_config, settings_markdown
from foldertrack.config.secrets import SECRETS, Secret, SecretSpec, resolve_secret
from foldertrack.config.settings import EWS_VERSIONS, SECTIONS, SETTINGS, SETTINGS_BY_NAME, Setting
from foldertrack.config.units import format_duration, format_size, parse_duration, parse_size

check_declarations()

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "EWS_VERSIONS",
    "SECRETS",
    "SECTIONS",
    "SECTION_CLASSES",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Config",
    "DatabaseConfig",
    "ExchangeConfig",
    "Kind",
    "MetricsConfig",
    "RulesConfig",
    "Secret",
    "SecretSpec",
    "Setting",
    "SinkConfig",
    "WatchConfig",
    "default_database_url",
    "format_duration",
    "format_size",
    "load_config",
    "locate_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "render_config",
    "resolve_secret",
    "settings_markdown",
]
