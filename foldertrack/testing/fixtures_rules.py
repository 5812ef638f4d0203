"""Fixtures for configuration files and rule directories, shared by the whole suite."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "EXAMPLE_RULES",
    "clean_config_env",
    "rules_dir",
    "toml_text",
    "write_config",
    "write_rules",
]

#: the shipped example rule file (``rules/example.yaml`` in the repository)
EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "rules" / "example.yaml"

#: environment variables that change where configuration, state and secrets come from
CONFIG_ENV_VARS = (
    "FOLDERTRACK_CONFIG",
    "FOLDERTRACK_EXCHANGE_PASSWORD",
    "FOLDERTRACK_EXCHANGE_CLIENT_SECRET",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "XDG_STATE_HOME",
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A TOML document of ``{section: {key: value}}`` (enough for config tests; no nesting)."""
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        out.append("")
    return "\n".join(out)


@pytest.fixture
def clean_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Remove the developer's foldertrack/systemd variables; state goes under tmp_path. Yields a clean
    environment mapping for ``load_config(env=...)`` (os.environ is cleaned too, for the CLI)."""
    for name in CONFIG_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(exchange={...}, watch={...})`` or ``write_config("raw toml")`` → the file's path.

    ``name=`` chooses the file name (default ``foldertrack.toml`` in tmp_path).
    """

    def write(
        text: str | None = None, /, *, name: str = "foldertrack.toml", **sections: Mapping[str, Any]
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text) if text is not None else toml_text(sections)
        path.write_text(body, encoding="utf-8")
        return path

    return write


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """An empty rules directory (``tmp_path/rules``); fill it with ``write_rules``."""
    path = tmp_path / "rules"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def write_rules(rules_dir: Path) -> Callable[[str, str | bytes], Path]:
    """``write_rules("team.yaml", yaml_text)`` → path; text is dedented, bytes are written as they are."""

    def write(name: str, content: str | bytes) -> Path:
        path = rules_dir / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        return path

    return write
