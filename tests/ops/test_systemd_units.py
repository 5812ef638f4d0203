"""The systemd units in ``systemd/``: they load cleanly, stay sandboxed, and promise what the program does.

``systemd-analyze`` (Debian package ``systemd``; ``.ci/run`` installs it) checks the files themselves.
``verify`` insists that every ``Exec*`` binary exists. The units name ``/usr/local/bin/foldertrack``, where
the install steps link the console script; that path does not exist on a development machine or in CI,
and the tests must not create it. So ``verify`` runs on a temporary copy in which exactly that path is
replaced by a link to this checkout's console script, made the way the install steps make
``/usr/local/bin/foldertrack``; everything else is checked as written. ``security --offline=true`` needs
no binary and runs on the files in the repository unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from foldertrack.config import SECRETS, default_database_url
from foldertrack.errors import ConfigError, DatabaseError

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED = "/usr/local/bin/foldertrack"
MAX_EXPOSURE = 2.0
# the unit files, and the name each is checked under (a template is verified as one of its instances)
CASES = [("foldertrack.service", "foldertrack.service"), ("foldertrack@.service", "foldertrack@east.service")]


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not found: install Debian's `systemd` package (.ci/run does)")
    first = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout
    version = re.match(r"systemd (\d+)", first)
    if version is None or int(version.group(1)) < 250:
        pytest.skip(
            f"systemd-analyze too old for `security --offline` (needs 250+): {first.splitlines()[:1]}"
        )
    return tool


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order."""
    section, out = "", []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, key: str) -> list[str]:
    return [v for _, k, v in directives(path) if k == key]


@pytest.fixture
def linked_program(tmp_path) -> Path:
    """The install step ``ln -s /opt/foldertrack/bin/foldertrack /usr/local/bin/`` made in a temporary
    directory, with this checkout's console script; the link must run (its shebang names the venv)."""
    program = Path(sys.executable).parent / "foldertrack"
    assert program.is_file(), f"console script {program} missing: install the checkout (pip install -e .)"
    link = tmp_path / "usr-local-bin" / "foldertrack"
    link.parent.mkdir()
    link.symlink_to(program)
    result = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "foldertrack, version" in result.stdout, result.stderr
    return link


@pytest.mark.parametrize(("unit", "name"), CASES)
def test_systemd_analyze_verify_passes(tmp_path, linked_program, unit, name):
    tool = systemd_analyze()
    text, replaced = re.subn(
        rf"^(Exec\w+=-?){re.escape(INSTALLED)} ",
        rf"\g<1>{linked_program} ",
        (UNITS / unit).read_text(encoding="utf-8"),
        flags=re.M,
    )
    assert replaced == 2  # ExecStartPre (db upgrade) and ExecStart (run)
    (tmp_path / unit).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [tool, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    # verify exits 0 on unknown keys and bad values too (it only warns), so any word about our unit fails
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "foldertrack" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


@pytest.mark.parametrize(("unit", "name"), CASES)
def test_security_exposure_is_at_most_2(unit, name):
    tool = systemd_analyze()
    result = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout
    assert "✗ PrivateNetwork=" in result.stdout  # the one big thing it may not have: it talks to Exchange


def test_the_template_has_the_same_settings_but_per_instance_paths():
    single, template = directives(UNITS / "foldertrack.service"), directives(UNITS / "foldertrack@.service")
    per_instance = {
        k: v.replace("%i/", "").replace("/%i", "").replace(" %i:", ":") for _, k, v in template if "%i" in v
    }
    assert set(per_instance) == {
        "Description",
        "ExecStartPre",
        "ExecStart",
        "StateDirectory",
        "ConfigurationDirectory",
        "LoadCredential",
    }
    unified = [(s, k, per_instance.get(k, v)) for s, k, v in template]
    assert [d for d in unified if d[1] != "Description"] == [d for d in single if d[1] != "Description"]
    assert values(UNITS / "foldertrack@.service", "ExecStart") == [
        f"{INSTALLED} run --config /etc/foldertrack/%i/foldertrack.toml"
    ]


def test_the_unit_matches_what_the_program_does():
    unit = UNITS / "foldertrack.service"
    assert values(unit, "Type") == ["notify"]
    assert values(unit, "NotifyAccess") == ["main"]
    assert values(unit, "WatchdogSec") and values(unit, "Restart") == ["on-failure"]
    # exit codes: a configuration error must not restart, a transient failure must
    assert values(unit, "RestartPreventExitStatus") == [str(ConfigError.exit_code)]
    assert DatabaseError.exit_code != ConfigError.exit_code
    assert values(unit, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    config = "--config /etc/foldertrack/foldertrack.toml"
    assert values(unit, "ExecStart") == [f"{INSTALLED} run {config}"]
    assert values(unit, "ExecStartPre") == [f"-{INSTALLED} db upgrade {config}"]
    # the password arrives as the credential the configuration looks for
    credential = next(s.credential for s in SECRETS if s.attr == "password")
    assert values(unit, "LoadCredential") == [f"{credential}:/etc/foldertrack/{credential}"]
    # the database defaults to the state directory systemd creates
    assert values(unit, "StateDirectory") == ["foldertrack"]
    state = default_database_url({"STATE_DIRECTORY": "/var/lib/foldertrack"})
    assert state == "sqlite:////var/lib/foldertrack/foldertrack.db"
    assert values(unit, "ConfigurationDirectory") == ["foldertrack"]
    families = values(unit, "RestrictAddressFamilies")
    assert families == ["AF_UNIX AF_INET AF_INET6"]  # notify + journal, Exchange and PostgreSQL over TCP
