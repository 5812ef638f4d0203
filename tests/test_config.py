"""Configuration: precedence, validation messages, defaults, secrets, and the settings table."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from foldertrack.config import (
    EWS_VERSIONS,
    SETTINGS,
    Secret,
    format_duration,
    load_config,
    parse_duration,
    parse_size,
    render_config,
    settings_markdown,
)
from foldertrack.config import loader as config_module
from foldertrack.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_default_file(monkeypatch, tmp_path):
    """Point the default config path somewhere empty, so the real /etc is never read."""
    path = tmp_path / "etc" / "foldertrack.toml"
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", path)
    return path


# --------------------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800), ("1w", 604800),
     ("1h 30m", 5400), ("1.5s", 1.5), ("0s", 0)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "60", "60 seconds", "1x", "m", "1m1m", "-5s", "1h30", 60])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.05, 60, 900, 5400, 93784.5])
def test_format_duration_round_trips(seconds):
    assert parse_duration(format_duration(seconds)).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "size"),
    [(1024, 1024), ("5MiB", 5 * 2**20), ("5MB", 5_000_000), ("512kB", 512_000), ("1 GiB", 2**30), ("10", 10)],
)
def test_parse_size(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["5 parsecs", "MB", "-1", -1, "1.5.5MB"])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        parse_size(value)


# --------------------------------------------------------------------------- where the file comes from


def test_defaults_without_a_file(no_default_file, clean_config_env):
    cfg = load_config(env=clean_config_env, required=False)
    assert cfg.source is None
    assert cfg.exchange.auth == "basic"
    assert cfg.exchange.version == "Exchange2016"
    assert cfg.exchange.max_connections == 0
    assert cfg.watch.poll_interval == 60.0
    assert cfg.watch.safety_sync_interval == 900.0
    assert cfg.watch.debounce == 0.05
    assert (cfg.watch.workers, cfg.watch.max_attempts) == (4, 5)
    assert cfg.sink.name == "sql"
    assert cfg.sink.max_attachment_bytes == 5 * 2**20
    assert cfg.metrics.address is None
    assert cfg.rules.dir == no_default_file.parent / "rules"
    assert cfg.database.url == f"sqlite:///{clean_config_env['XDG_STATE_HOME']}/foldertrack/foldertrack.db"


def test_missing_default_file_is_an_error_when_required(no_default_file, clean_config_env):
    with pytest.raises(ConfigError, match=r"foldertrack.toml: configuration file not found \(use --config"):
        load_config(env=clean_config_env)


def test_precedence_option_then_env_then_default(no_default_file, write_config, clean_config_env):
    no_default_file.parent.mkdir()
    no_default_file.write_text('[sink]\nname = "from-default"\n')
    env_file = write_config(name="env.toml", sink={"name": "from-env"})
    option_file = write_config(name="option.toml", sink={"name": "from-option"})
    env = {**clean_config_env, "FOLDERTRACK_CONFIG": str(env_file)}

    assert load_config(env=clean_config_env).sink.name == "from-default"
    assert load_config(env=env).sink.name == "from-env"
    assert load_config(option_file, env=env).sink.name == "from-option"
    assert load_config(option_file, env=env).source == option_file


@pytest.mark.parametrize("how", ["option", "env"])
def test_named_file_must_exist_even_when_not_required(how, tmp_path, clean_config_env):
    missing = tmp_path / "nope.toml"
    env = {**clean_config_env, "FOLDERTRACK_CONFIG": str(missing)} if how == "env" else clean_config_env
    with pytest.raises(ConfigError, match=f"{missing}: configuration file not found$"):
        load_config(missing if how == "option" else None, env=env, required=False)


def test_invalid_toml(write_config, clean_config_env):
    path = write_config("[watch]\npoll_interval = \n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 2"):
        load_config(path, env=clean_config_env)


def test_full_file(write_config, clean_config_env, tmp_path):
    path = write_config(
        exchange={
            "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
            "auth": "ntlm",
            "username": "svc@example.com",
            "access": "delegate",
            "verify_tls": False,
            "version": "Exchange2013_SP1",
            "max_connections": 12,
        },
        database={"url": "postgresql+psycopg://ft:pw@db/ft"},
        rules={"dir": "my-rules"},
        watch={"poll_interval": "1h30m", "safety_sync_interval": 300, "workers": 8, "debounce": "0s",
               "max_attempts": 3},
        sink={"name": "webhook", "max_attachment_bytes": "5MB"},
        metrics={"address": "127.0.0.1:9464"},
    )  # fmt: skip
    cfg = load_config(path, env=clean_config_env)
    assert cfg.exchange.endpoint == "https://mail.example.com/EWS/Exchange.asmx"
    assert (cfg.exchange.auth, cfg.exchange.access, cfg.exchange.verify_tls) == ("ntlm", "delegate", False)
    assert (cfg.exchange.version, cfg.exchange.max_connections) == ("Exchange2013_SP1", 12)
    assert cfg.database.url == "postgresql+psycopg://ft:pw@db/ft"
    assert cfg.database.display_url == "postgresql+psycopg://ft:***@db/ft"
    assert cfg.rules.dir == tmp_path / "my-rules"  # relative to the config file
    assert (cfg.watch.poll_interval, cfg.watch.safety_sync_interval, cfg.watch.debounce) == (5400, 300, 0)
    assert (cfg.watch.workers, cfg.watch.max_attempts) == (8, 3)
    assert (cfg.sink.name, cfg.sink.max_attachment_bytes) == ("webhook", 5_000_000)
    assert (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9464)


# --------------------------------------------------------------------------- validation messages


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[exchange]\npasword_file = "/x"\n',
         "2: unknown key exchange.pasword_file (did you mean exchange.password_file?)"),
        ('[exchange]\npoll_interval = "60s"\n',
         "2: unknown key exchange.poll_interval (did you mean watch.poll_interval?)"),
        ('[exchange]\ncolour = "blue"\n', "2: unknown key exchange.colour"),
        ('[exchnge]\nauth = "basic"\n', "1: unknown section 'exchnge' (did you mean exchange?)"),
        ('top = 1\n', "1: unknown key 'top'"),
        ('poll_interval = "1m"\n', "1: unknown key 'poll_interval' (did you mean watch.poll_interval?)"),
        ('watch = 5\n', "1: [watch] must be a table, not integer 5"),
        ('[exchange]\nverify_tls = "yes"\n',
         "2: exchange.verify_tls: must be true or false, not string 'yes'"),
        ("[watch]\nworkers = \"4\"\n", "2: watch.workers: must be an integer, not string '4'"),
        ("[watch]\nworkers = 0\n", "2: watch.workers: must be at least 1, not 0"),
        ("[watch]\nworkers = true\n", "2: watch.workers: must be an integer, not boolean True"),
        ('[watch]\npoll_interval = "60 seconds"\n',
         "2: watch.poll_interval: '60 seconds' is not a duration (use e.g. 90s, 15m, 1h30m, 250ms, 2d)"),
        ('[watch]\npoll_interval = "0s"\n', "2: watch.poll_interval: must be more than 0s"),
        ('[watch]\ndebounce = [1]\n', "2: watch.debounce: must be a duration like \"90s\", not array"),
        ('[exchange]\nauth = "kerberos"\n',
         "2: exchange.auth: must be one of basic, ntlm, oauth2, not 'kerberos'"),
        ('[exchange]\nversion = "Exchange2017"\n', "(did you mean 'Exchange2016'?)"),
        ('[exchange]\nendpoint = "mail.example.com"\n', "2: exchange.endpoint: must be an http(s) URL"),
        ('[database]\nurl = "/var/lib/x.db"\n', "2: database.url: must be a SQLAlchemy URL"),
        ('[sink]\nmax_attachment_bytes = "5 parsecs"\n',
         "2: sink.max_attachment_bytes: '5 parsecs' is not a size"),
        ('[metrics]\naddress = "localhost"\n', "2: metrics.address: must be HOST:PORT"),
        ('[exchange]\nusername = ""\n', "2: exchange.username: must not be empty"),
    ],
)  # fmt: skip
def test_invalid_values_name_file_line_and_key(text, message, write_config, clean_config_env):
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=clean_config_env)
    assert str(info.value).startswith(f"{path}:")
    assert message in str(info.value)


def test_every_problem_is_reported_at_once(write_config, clean_config_env):
    path = write_config(
        """\
        [exchange]
        auth = "nope"
        usrname = "x"

        [watch]
        poll_interval = "soon"
        workers = -1
        """
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env=clean_config_env)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:2", f"{path}:3", f"{path}:6", f"{path}:7"]


# --------------------------------------------------------------------------- derived defaults


def test_default_database_url_prefers_systemd_state_directory(no_default_file, clean_config_env):
    env = {**clean_config_env, "STATE_DIRECTORY": "/var/lib/foldertrack:/var/lib/other"}
    cfg = load_config(env=env, required=False)
    assert cfg.database.url == "sqlite:////var/lib/foldertrack/foldertrack.db"
    assert cfg.database.sqlite_path == Path("/var/lib/foldertrack/foldertrack.db")


def test_default_database_url_falls_back_to_home(no_default_file):
    cfg = load_config(env={"HOME": "/home/ops"}, required=False)
    assert cfg.database.url == "sqlite:////home/ops/.local/state/foldertrack/foldertrack.db"


# --------------------------------------------------------------------------- secrets


def test_secret_is_masked_everywhere():
    secret = Secret("hunter2", "file /x")
    assert str(secret) == "***"
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in f"{secret} {secret!r}"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")


def test_password_sources_in_order(write_config, clean_config_env, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "exchange-password").write_text("from-credential\n")
    (tmp_path / "pw").write_text("from-file\n")
    env = {**clean_config_env, "CREDENTIALS_DIRECTORY": str(creds)}
    bare = write_config(name="bare.toml", exchange={"username": "svc@example.com"})
    with_file = write_config(name="file.toml", exchange={"password_file": "pw"})  # relative to the file

    assert load_config(bare, env=env).exchange.require_password().reveal() == "from-credential"
    env["FOLDERTRACK_EXCHANGE_PASSWORD"] = "from-env"
    assert load_config(bare, env=env).exchange.require_password().reveal() == "from-env"
    cfg = load_config(with_file, env=env)
    assert cfg.exchange.require_password().reveal() == "from-file"
    assert cfg.exchange.password.source == f"file {tmp_path / 'pw'}"
    assert "from-file" not in repr(cfg)


def test_missing_password_is_an_error_only_when_required(write_config, clean_config_env):
    cfg = load_config(write_config(exchange={"username": "svc@example.com"}), env=clean_config_env)
    assert cfg.exchange.password is None
    with pytest.raises(ConfigError, match=r"password is not set \(looked in exchange.password_file, else "):
        cfg.exchange.require_password()


def test_unreadable_password_file_is_not_replaced_by_the_next_source(
    write_config, clean_config_env, tmp_path
):
    path = write_config(exchange={"password_file": str(tmp_path / "missing")})
    cfg = load_config(path, env={**clean_config_env, "FOLDERTRACK_EXCHANGE_PASSWORD": "env"})
    with pytest.raises(ConfigError, match=r"password_file .*missing: cannot read secret \(No such file"):
        cfg.exchange.require_password()


def test_oauth2_client_secret_and_connection_problems(write_config, clean_config_env):
    path = write_config(exchange={"auth": "oauth2", "oauth2_client_id": "app"})
    cfg = load_config(path, env=clean_config_env)
    problems = cfg.exchange.connection_problems()
    assert problems[0] == "exchange.endpoint is not set"
    assert any("oauth2_tenant_id" in p for p in problems)
    assert any("client secret is not set" in p for p in problems)
    env = {**clean_config_env, "FOLDERTRACK_EXCHANGE_CLIENT_SECRET": "s3cret"}
    assert load_config(path, env=env).exchange.require_client_secret().reveal() == "s3cret"
    with pytest.raises(ConfigError):
        cfg.exchange.require_connectable()


def test_render_masks_secrets_and_marks_defaults(write_config, clean_config_env):
    path = write_config(
        exchange={"username": "svc@example.com", "max_connections": 3},
        database={"url": "postgresql://ft:dbpass@db/ft"},
    )
    text = render_config(
        load_config(path, env={**clean_config_env, "FOLDERTRACK_EXCHANGE_PASSWORD": "hunter2"})
    )
    assert "hunter2" not in text and "dbpass" not in text
    assert "# password: *** (from $FOLDERTRACK_EXCHANGE_PASSWORD)" in text
    assert 'url = "postgresql://ft:***@db/ft"' in text
    assert "max_connections = 3\n" in text
    assert 'auth = "basic"  # default' in text
    assert 'poll_interval = "1m"  # default' in text


# --------------------------------------------------------------------------- one declaration


def test_versions_are_exchangelib_api_versions():
    from exchangelib.version import VERSIONS

    assert set(EWS_VERSIONS) == {api_version for _, api_version, _ in VERSIONS}


def test_every_default_is_valid():
    for setting in SETTINGS:
        if setting.default is not None:
            setting.kind.parse(setting.default)


def test_readme_documents_every_setting():
    docs = [p for p in (REPO / "README.md", REPO / ".readme-parts" / "config-rules.md") if p.exists()]
    assert docs, "neither README.md nor .readme-parts/config-rules.md exists"
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        assert settings_markdown() in text, f"{doc.name}: regenerate the settings table"


def test_ews_oauth2_with_a_certificate_needs_no_secret_and_reaches_the_connector(
    write_config, clean_config_env, tmp_path
):
    from foldertrack.runtime import exchange_settings

    pem = tmp_path / "app.pem"
    pem.write_text("not read here", encoding="utf-8")
    path = write_config(
        "[exchange]\n"
        'endpoint = "https://outlook.office365.com/EWS/Exchange.asmx"\n'
        'auth = "oauth2"\n'
        'oauth2_tenant_id = "t"\n'
        'oauth2_client_id = "c"\n'
        f'oauth2_certificate_file = "{pem}"\n'
        'oauth2_authority = "https://login.microsoftonline.us"\n'
        f'ca_file = "{pem}"\n'
    )
    cfg = load_config(path, env=clean_config_env)
    assert cfg.exchange.connection_problems() == []
    settings = exchange_settings(cfg)
    assert (settings.oauth2_authority, settings.oauth2_scope) == (
        "https://login.microsoftonline.us",
        "https://outlook.office365.com/.default",
    )
    assert (
        settings.oauth2_certificate_file == pem and settings.ca_file == str(pem) and settings.password == ""
    )


def test_ews_oauth2_without_secret_or_certificate_says_where_it_looked(write_config, clean_config_env):
    path = write_config(
        '[exchange]\nendpoint = "https://x/EWS/Exchange.asmx"\nauth = "oauth2"\n'
        'oauth2_tenant_id = "t"\noauth2_client_id = "c"\n'
    )
    problems = load_config(path, env=clean_config_env).exchange.connection_problems()
    assert len(problems) == 1 and "client secret" in problems[0] and "exchange-client-secret" in problems[0]
