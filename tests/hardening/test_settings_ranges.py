"""Issue 10 item 8: settings that parse but cannot work are refused, by ``config check`` and ``run`` alike,
naming the key (one declaration: the settings table's kinds)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from foldertrack.cli import main
from foldertrack.config import SETTINGS

BAD = [
    ("debounce = nan", "watch.debounce: must be a finite duration"),
    ("poll_interval = inf", "watch.poll_interval: must be a finite duration"),
    ("stall_timeout = -inf", "watch.stall_timeout: must be a finite duration"),
    ("workers = 100000", "watch.workers: must be at most 256, not 100,000"),
    ('safety_sync_interval = "9999d"', "watch.safety_sync_interval: must be between 1s and 7d"),
    ("max_attempts = 0", "watch.max_attempts: must be at least 1, not 0"),
]


def _config(tmp_path, line: str):
    path = tmp_path / "foldertrack.toml"
    path.write_text(
        f'[exchange]\nendpoint = "http://127.0.0.1:1/EWS/Exchange.asmx"\nusername = "svc"\n\n[watch]\n{line}\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(("line", "message"), BAD)
def test_config_check_names_the_key(tmp_path, line, message):
    result = CliRunner().invoke(main, ["config", "check", "--config", str(_config(tmp_path, line))])
    assert result.exit_code == 1, result.output
    assert f"foldertrack.toml:6: {message}" in result.output


@pytest.mark.parametrize(("line", "message"), BAD)
def test_run_refuses_the_same_values_before_starting_anything(tmp_path, line, message):
    env = {"FOLDERTRACK_EXCHANGE_PASSWORD": "pw", "NOTIFY_SOCKET": ""}
    result = CliRunner().invoke(main, ["run", "--config", str(_config(tmp_path, line))], env=env)
    assert result.exit_code == 78, result.output  # EX_CONFIG: systemd does not restart in a loop
    assert message in result.output


def test_every_numeric_setting_has_a_range():
    for setting in SETTINGS:
        if setting.kind.name.startswith(("integer", "duration", "size")):
            assert " to " in setting.kind.name or "≤" in setting.kind.name, setting.name
