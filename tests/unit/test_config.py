"""Settings loading: file choice, defaults, environment overrides, validation, DSNs, secrecy."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import structlog

from rocketd import config
from rocketd.config import ConfigError, DatabaseSettings, Settings, load_settings
from tests.support.paths import ROOT

REPO_ROOT = ROOT
SHIPPED = REPO_ROOT / "etc" / "rocket.yaml"

UPSTREAM_APP_YAML = """\
server:
  port: 8080

database:
  driver: postgres
  host: localhost
  port: 5433
  user: rocket
  password: rocket
  name: rocket
  pool_size: 50
  path: ./data
  # data_dir: ./data

app_pool_size: 5
jwt_secret: changeme-secret
platform_jwt_secret: {platform_secret}

storage:
  driver: local
  local_path: ./uploads
  max_file_size: 10485760

instrumentation:
  enabled: true
  retention_days: 7
  sampling_rate: 1.0
  buffer_size: 500
  flush_interval_ms: 100

# ai:
#   base_url: https://api.openai.com/v1
#   api_key: sk-...
#   model: gpt-4o
"""


LONG_SECRET = "0123456789abcdef0123456789abcdef"  # 32 bytes: the shortest accepted


def upstream_app_yaml(platform_secret: str = LONG_SECRET) -> str:
    return UPSTREAM_APP_YAML.replace("{platform_secret}", platform_secret)


def write(tmp_path: Path, text: str, name: str = "rocket.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def error_of(config_path: str | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_path, environ={} if environ is None else environ)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with neither etc/rocket.yaml nor app.yaml."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# --- defaults and file choice ------------------------------------------------------------------


def test_without_any_file_all_defaults_apply_and_database_is_not_configured(
    empty_cwd: Path,
) -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.config_path is None
    assert settings.server.port == 8080
    assert settings.server.host == "127.0.0.1"
    assert settings.server.max_body_size == 1_048_576
    assert settings.server.shutdown_timeout == 10.0
    assert settings.database.port == 5432
    assert settings.database.name == "rocket"
    assert settings.database.configured is False
    assert settings.log.format == "auto"
    assert settings.log.level == "info"
    assert settings.auth.bcrypt_cost == 10
    assert settings.auth.access_token_ttl == 900
    assert settings.instrumentation.sampling_rate == 1.0
    assert settings.app_pool_size == 5
    assert settings.platform_jwt_secret == ""
    assert settings.data_dir == "./data"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]


def test_explicit_path_is_read_and_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9000\nlog:\n  level: debug\n")
    settings = load_settings(path, environ={})
    assert settings.server.port == 9000
    assert settings.log.level == "debug"
    assert settings.config_path == path


def test_rocket_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9001\n")
    assert load_settings(environ={"ROCKET_CONFIG": path}).server.port == 9001


def test_explicit_argument_wins_over_rocket_config(tmp_path: Path) -> None:
    arg = write(tmp_path, "server:\n  port: 9002\n", name="arg.yaml")
    env = write(tmp_path, "server:\n  port: 9003\n", name="env.yaml")
    assert load_settings(arg, environ={"ROCKET_CONFIG": env}).server.port == 9002


def test_etc_rocket_yaml_in_cwd_is_preferred_over_app_yaml(empty_cwd: Path) -> None:
    (empty_cwd / "etc").mkdir()
    write(empty_cwd / "etc", "server:\n  port: 9004\n")
    write(empty_cwd, "server:\n  port: 9005\n", name="app.yaml")
    settings = load_settings(environ={})
    assert settings.server.port == 9004
    assert settings.config_path == str(empty_cwd / "etc" / "rocket.yaml")


def test_app_yaml_in_cwd_is_used_when_there_is_no_etc_rocket_yaml(empty_cwd: Path) -> None:
    write(empty_cwd, "server:\n  port: 9006\n", name="app.yaml")
    assert load_settings(environ={}).server.port == 9006


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    message = error_of(str(tmp_path / "nope.yaml"))
    assert "config file not found" in message
    assert "nope.yaml" in message


def test_missing_file_named_by_rocket_config_is_an_error(tmp_path: Path) -> None:
    message = error_of(environ={"ROCKET_CONFIG": str(tmp_path / "nope.yaml")})
    assert "nope.yaml" in message
    assert "ROCKET_CONFIG" in message


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), environ={})
    assert dataclasses.replace(settings, config_path=None) == Settings()


def test_empty_section_means_defaults_for_that_section(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "ai:\nserver:\n  port:\n"), environ={})
    assert settings.ai == config.AISettings()
    assert settings.server.port == 8080


def test_invalid_yaml_is_a_one_line_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "server:\n  port: [1, 2\n"))
    assert "invalid YAML" in message
    assert "line" in message


def test_top_level_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "- a\n- b\n"))
    assert "mapping" in message


# --- shipped and upstream files ------------------------------------------------------------------


def test_shipped_rocket_yaml_loads_with_defaults_and_leaves_database_unconfigured() -> None:
    settings = load_settings(str(SHIPPED), environ={})
    assert settings.database.configured is False
    assert settings.database.url == ""
    assert dataclasses.replace(settings, config_path=None) == Settings()


def test_shipped_rocket_yaml_documents_every_key() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    for key in config._all_keys(config._SCHEMA):
        assert f"{key.path[-1]}:" in text, key.dotted


def test_upstream_app_yaml_with_its_short_platform_secret_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, upstream_app_yaml("changeme-platform-secret"), name="app.yaml")
    message = error_of(path)
    assert message.startswith("platform_jwt_secret: must be at least 32 bytes")
    assert "changeme-platform-secret" not in message


@pytest.mark.parametrize("secret", ["x" * 31, "é" * 15 + "x"])  # 31 bytes either way
def test_a_platform_jwt_secret_shorter_than_32_bytes_is_refused(
    empty_cwd: Path, secret: str
) -> None:
    message = error_of(environ={"ROCKET_PLATFORM_JWT_SECRET": secret})
    assert message.startswith("platform_jwt_secret: must be at least 32 bytes")
    assert load_settings(environ={"ROCKET_PLATFORM_JWT_SECRET": secret + "y"}).platform_jwt_secret


def test_upstream_app_yaml_loads_and_configures_the_database(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, upstream_app_yaml(), name="app.yaml"), environ={})
    db = settings.database
    assert db.configured is True
    assert (db.host, db.port, db.user, db.password, db.name) == (
        "localhost",
        5433,
        "rocket",
        "rocket",
        "rocket",
    )
    assert db.pool_size == 50
    assert settings.platform_jwt_secret == LONG_SECRET
    assert settings.jwt_secret == "changeme-secret"
    assert settings.storage.local_path == "./uploads"
    assert db.dsn() == "postgresql://rocket:rocket@localhost:5433/rocket"


def test_upstream_express_sqlite_data_dir_key_is_accepted_and_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  driver: postgres\n  data_dir: ./data\n")
    assert load_settings(path, environ={}).database.configured is False


# --- environment overrides -----------------------------------------------------------------------


# (variable, text, key, expected value): one row per key that has a simple override.
ENV_OVERRIDES = [
    ("ROCKET_SERVER_HOST", "127.0.0.1", "server.host", "127.0.0.1"),
    ("ROCKET_SERVER_PORT", "9100", "server.port", 9100),
    ("ROCKET_SERVER_MAX_BODY_SIZE", "2048", "server.max_body_size", 2048),
    ("ROCKET_SERVER_SHUTDOWN_TIMEOUT", "2.5", "server.shutdown_timeout", 2.5),
    ("ROCKET_SERVER_MAX_REQUEST_LINE", "16384", "server.max_request_line", 16384),
    ("ROCKET_SERVER_MAX_HEADER_SIZE", "4096", "server.max_header_size", 4096),
    ("ROCKET_SERVER_MAX_HEADERS", "64", "server.max_headers", 64),
    ("ROCKET_SERVER_HEADER_TIMEOUT", "2.5", "server.header_timeout", 2.5),
    ("ROCKET_SERVER_KEEPALIVE_TIMEOUT", "30", "server.keepalive_timeout", 30.0),
    ("ROCKET_SERVER_WORKERS", "3", "server.workers", 3),
    ("ROCKET_SERVER_DRAIN_DELAY", "1.5", "server.drain_delay", 1.5),
    (
        "ROCKET_SERVER_TRUSTED_PROXIES",
        "10.0.0.0/8, 127.0.0.1",
        "server.trusted_proxies",
        ("10.0.0.0/8", "127.0.0.1"),
    ),
    ("ROCKET_DATABASE_DRIVER", "postgres", "database.driver", "postgres"),
    ("ROCKET_DATABASE_URL", "postgresql://db/x", "database.url", "postgresql://db/x"),
    ("ROCKET_DATABASE_PORT", "6543", "database.port", 6543),
    ("ROCKET_DATABASE_NAME", "mgmt", "database.name", "mgmt"),
    ("ROCKET_DATABASE_POOL_SIZE", "20", "database.pool_size", 20),
    ("ROCKET_DATABASE_PREPARED_STATEMENTS", "false", "database.prepared_statements", False),
    ("ROCKET_LOG_FORMAT", "json", "log.format", "json"),
    ("ROCKET_API_DEFAULT_PER_PAGE", "10", "api.default_per_page", 10),
    ("ROCKET_API_MAX_PER_PAGE", "500", "api.max_per_page", 500),
    ("ROCKET_LOG_LEVEL", "WARNING", "log.level", "warning"),
    ("ROCKET_LOG_FILE", "/var/log/rocketd.log", "log.file", "/var/log/rocketd.log"),
    ("ROCKET_AUTH_ACCESS_TOKEN_TTL", "60", "auth.access_token_ttl", 60),
    ("ROCKET_AUTH_REFRESH_TOKEN_TTL", "120", "auth.refresh_token_ttl", 120),
    ("ROCKET_AUTH_BCRYPT_COST", "12", "auth.bcrypt_cost", 12),
    ("ROCKET_AUTH_PASSWORD_MIN_LENGTH", "12", "auth.password_min_length", 12),
    ("ROCKET_AUTH_PLATFORM_ADMIN_EMAIL", "p@x", "auth.platform_admin_email", "p@x"),
    ("ROCKET_AUTH_PLATFORM_ADMIN_PASSWORD", "pw1", "auth.platform_admin_password", "pw1"),
    ("ROCKET_AUTH_APP_ADMIN_EMAIL", "a@x", "auth.app_admin_email", "a@x"),
    ("ROCKET_AUTH_APP_ADMIN_PASSWORD", "pw2", "auth.app_admin_password", "pw2"),
    ("ROCKET_AUTH_ALLOW_DEFAULT_PASSWORD", "yes", "auth.allow_default_password", True),
    ("ROCKET_AUTH_LOGIN_THROTTLE_ENABLED", "no", "auth.login_throttle.enabled", False),
    (
        "ROCKET_AUTH_LOGIN_THROTTLE_ACCOUNT_MAX_FAILURES",
        "5",
        "auth.login_throttle.account_max_failures",
        5,
    ),
    ("ROCKET_AUTH_LOGIN_THROTTLE_ACCOUNT_WINDOW", "60", "auth.login_throttle.account_window", 60.0),
    ("ROCKET_AUTH_LOGIN_THROTTLE_BACKOFF_INITIAL", "2", "auth.login_throttle.backoff_initial", 2.0),
    ("ROCKET_AUTH_LOGIN_THROTTLE_BACKOFF_MAX", "8", "auth.login_throttle.backoff_max", 8.0),
    (
        "ROCKET_AUTH_LOGIN_THROTTLE_ADDRESS_MAX_FAILURES",
        "50",
        "auth.login_throttle.address_max_failures",
        50,
    ),
    ("ROCKET_AUTH_LOGIN_THROTTLE_ADDRESS_WINDOW", "30", "auth.login_throttle.address_window", 30.0),
    ("ROCKET_STORAGE_DRIVER", "local", "storage.driver", "local"),
    ("ROCKET_STORAGE_DRIVER", "Postgres", "storage.driver", "postgres"),
    ("ROCKET_STORAGE_CHUNK_SIZE", "262144", "storage.chunk_size", 262_144),
    ("ROCKET_STORAGE_LOCAL_PATH", "/srv/up", "storage.local_path", "/srv/up"),
    ("ROCKET_STORAGE_MAX_FILE_SIZE", "99", "storage.max_file_size", 99),
    ("ROCKET_INSTRUMENTATION_ENABLED", "off", "instrumentation.enabled", False),
    ("ROCKET_INSTRUMENTATION_RETENTION_DAYS", "3", "instrumentation.retention_days", 3),
    ("ROCKET_INSTRUMENTATION_SAMPLING_RATE", "0.25", "instrumentation.sampling_rate", 0.25),
    ("ROCKET_INSTRUMENTATION_BUFFER_SIZE", "10", "instrumentation.buffer_size", 10),
    ("ROCKET_INSTRUMENTATION_FLUSH_INTERVAL_MS", "5", "instrumentation.flush_interval_ms", 5),
    ("ROCKET_INSTRUMENTATION_MAX_BUFFERED", "50", "instrumentation.max_buffered", 50),
    (
        "ROCKET_INSTRUMENTATION_OTLP_ENDPOINT",
        "http://c:4318/v1/traces",
        "instrumentation.otlp_endpoint",
        "http://c:4318/v1/traces",
    ),
    ("ROCKET_METRICS_ENABLED", "yes", "metrics.enabled", True),
    ("ROCKET_METRICS_LISTEN", "127.0.0.1:9464", "metrics.listen", "127.0.0.1:9464"),
    ("ROCKET_AI_BASE_URL", "http://ai", "ai.base_url", "http://ai"),
    ("ROCKET_AI_API_KEY", "sk-1", "ai.api_key", "sk-1"),
    ("ROCKET_AI_MODEL", "m", "ai.model", "m"),
    (
        "ROCKET_OUTBOUND_ALLOW_NETWORKS",
        "10.1.0.0/16",
        "outbound.allow_networks",
        ("10.1.0.0/16",),
    ),
    (
        "ROCKET_WEBHOOKS_ALLOW_NETWORKS",
        "127.0.0.0/8,10.0.0.0/8",
        "webhooks.allow_networks",
        ("127.0.0.0/8", "10.0.0.0/8"),
    ),
    ("ROCKET_WEBHOOKS_ENV_PREFIX", "HOOK_", "webhooks.env_prefix", "HOOK_"),
    ("ROCKET_WEBHOOKS_CONNECT_TIMEOUT", "1.5", "webhooks.connect_timeout", 1.5),
    ("ROCKET_WEBHOOKS_TIMEOUT", "10", "webhooks.timeout", 10.0),
    ("ROCKET_WEBHOOKS_SYNC_TIMEOUT", "2", "webhooks.sync_timeout", 2.0),
    ("ROCKET_WEBHOOKS_MAX_RESPONSE_BYTES", "1024", "webhooks.max_response_bytes", 1024),
    ("ROCKET_WEBHOOKS_RETRY_BASE_SECONDS", "0.5", "webhooks.retry_base_seconds", 0.5),
    ("ROCKET_WEBHOOKS_SWEEP_INTERVAL", "5", "webhooks.sweep_interval", 5.0),
    ("ROCKET_WEBHOOKS_CONCURRENCY", "4", "webhooks.concurrency", 4),
    ("ROCKET_WEBHOOKS_BREAKER_THRESHOLD", "3", "webhooks.breaker_threshold", 3),
    ("ROCKET_WEBHOOKS_BREAKER_COOLDOWN", "9", "webhooks.breaker_cooldown", 9.0),
    ("ROCKET_WEBHOOKS_SECRET", "k", "webhooks.secret", "k"),
    ("ROCKET_WEBHOOKS_LOG_RETENTION_DAYS", "7", "webhooks.log_retention_days", 7.0),
    ("ROCKET_REDIS_URL", "redis://cache:6379/1", "redis.url", "redis://cache:6379/1"),
    ("ROCKET_REDIS_KEY_PREFIX", "shop:", "redis.key_prefix", "shop:"),
    ("ROCKET_APP_POOL_SIZE", "7", "app_pool_size", 7),
    ("ROCKET_APP_POOL_TIMEOUT", "2.5", "app_pool_timeout", 2.5),
    ("ROCKET_APP_POOL_IDLE_SECONDS", "60", "app_pool_idle_seconds", 60.0),
    ("ROCKET_DATABASE_REPLICA_WAIT", "0.25", "database.replica_wait", 0.25),
    (
        "ROCKET_DATABASE_REPLICA_URLS",
        "postgresql://r1/x,postgresql://r2/x",
        "database.replica_urls",
        ("postgresql://r1/x", "postgresql://r2/x"),
    ),
    (
        "ROCKET_DATABASE_LISTEN_URL",
        "postgresql://db:5432/x",
        "database.listen_url",
        "postgresql://db:5432/x",
    ),
    ("ROCKET_WORKFLOW_TICK_SECONDS", "0.5", "workflow_tick_seconds", 0.5),
    ("ROCKET_WORKFLOW_RETENTION_DAYS", "30", "workflow_retention_days", 30.0),
    ("ROCKET_BACKGROUND_WORK", "false", "background_work", False),
    ("ROCKET_JWT_SECRET", "j", "jwt_secret", "j"),
    ("ROCKET_PLATFORM_JWT_SECRET", LONG_SECRET, "platform_jwt_secret", LONG_SECRET),
    ("ROCKET_DATA_DIR", "/var/lib/rocket", "data_dir", "/var/lib/rocket"),
]


@pytest.mark.parametrize(("env", "text", "dotted", "expected"), ENV_OVERRIDES)
def test_every_key_is_overridden_by_its_rocket_env_var(
    empty_cwd: Path, env: str, text: str, dotted: str, expected: object
) -> None:
    value: object = load_settings(environ={env: text})
    for attr in dotted.split("."):
        value = getattr(value, attr)
    assert value == expected
    assert type(value) is type(expected)


def test_env_variable_names_follow_the_one_rule_for_every_key() -> None:
    rows = {env: dotted for env, _, dotted, _ in ENV_OVERRIDES}
    rows |= {
        f"ROCKET_DATABASE_{name.upper()}": f"database.{name}"
        for name in ("host", "user", "password", "password_file")
    }
    keys = config._all_keys(config._SCHEMA)
    assert rows == {key.env: key.dotted for key in keys}
    for env, dotted in rows.items():
        assert env == "ROCKET_" + dotted.upper().replace(".", "_")


def test_env_database_host_user_password_configure_the_database(empty_cwd: Path) -> None:
    db = load_settings(
        environ={
            "ROCKET_DATABASE_HOST": "db.internal",
            "ROCKET_DATABASE_USER": "svc",
            "ROCKET_DATABASE_PASSWORD": "pw",
        }
    ).database
    assert db.configured is True
    assert (db.host, db.user, db.password) == ("db.internal", "svc", "pw")


def test_env_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9000\nlog:\n  format: console\n")
    settings = load_settings(path, environ={"ROCKET_SERVER_PORT": "9999"})
    assert settings.server.port == 9999
    assert settings.log.format == "console"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("Yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("NO", False),
        ("Off", False),
    ],
)
def test_env_booleans_accept_common_spellings(empty_cwd: Path, text: str, expected: bool) -> None:
    settings = load_settings(environ={"ROCKET_INSTRUMENTATION_ENABLED": text})
    assert settings.instrumentation.enabled is expected


def test_background_work_is_on_by_default_and_read_from_file_and_env(
    tmp_path: Path, empty_cwd: Path
) -> None:
    assert load_settings(environ={}).background_work is True
    path = write(tmp_path, "background_work: false\n")
    assert load_settings(path, environ={}).background_work is False
    assert load_settings(path, environ={"ROCKET_BACKGROUND_WORK": "on"}).background_work is True
    assert load_settings(environ={"ROCKET_BACKGROUND_WORK": "0"}).background_work is False


def test_background_work_must_be_a_boolean(tmp_path: Path, empty_cwd: Path) -> None:
    message = error_of(environ={"ROCKET_BACKGROUND_WORK": "api"})
    assert message.startswith("background_work: expected a boolean")
    assert message.endswith("(from ROCKET_BACKGROUND_WORK)")
    path = write(tmp_path, 'background_work: "false"\n')
    assert error_of(path).startswith("background_work: expected a boolean, got 'false'")


@dataclasses.dataclass(frozen=True, repr=False)
class _WebhookSettings(config._Section):
    allow_networks: tuple[str, ...] = config._key(())


@dataclasses.dataclass(frozen=True, repr=False)
class _RootWithList(config._Section):
    webhooks: _WebhookSettings = dataclasses.field(default_factory=_WebhookSettings)


def test_a_list_key_declared_once_is_read_from_env_comma_separated(empty_cwd: Path) -> None:
    schema = config._build_schema(_RootWithList)
    [key] = config._all_keys(schema)
    assert key.env == "ROCKET_WEBHOOKS_ALLOW_NETWORKS"
    environ = {"ROCKET_WEBHOOKS_ALLOW_NETWORKS": " 10.0.0.0/8, ,192.168.0.0/16 "}
    given, _, _ = config._read_values(schema, None, environ)
    root = config._instantiate(schema, given)
    assert root.webhooks.allow_networks == ("10.0.0.0/8", "192.168.0.0/16")


def test_a_list_key_is_read_from_a_yaml_list(tmp_path: Path) -> None:
    schema = config._build_schema(_RootWithList)
    path = write(tmp_path, "webhooks:\n  allow_networks: [10.0.0.0/8, 127.0.0.1/32]\n")
    given, _, _ = config._read_values(schema, path, {})
    root = config._instantiate(schema, given)
    assert root.webhooks.allow_networks == ("10.0.0.0/8", "127.0.0.1/32")


def test_a_list_key_rejects_a_yaml_scalar(tmp_path: Path) -> None:
    schema = config._build_schema(_RootWithList)
    path = write(tmp_path, "webhooks:\n  allow_networks: 5\n")
    with pytest.raises(ConfigError, match=r"^webhooks\.allow_networks: expected a list"):
        config._read_values(schema, path, {})


def test_rocket_database_url_wins_over_database_url_which_wins_over_the_file(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "database:\n  url: postgresql://file/db\n")
    both = {
        "ROCKET_DATABASE_URL": "postgresql://rocket-env/db",
        "DATABASE_URL": "postgresql://plain-env/db",
    }
    assert load_settings(path, environ=both).database.url == "postgresql://rocket-env/db"
    plain = {"DATABASE_URL": "postgresql://plain-env/db"}
    assert load_settings(path, environ=plain).database.url == "postgresql://plain-env/db"
    assert load_settings(path, environ={}).database.url == "postgresql://file/db"


def test_database_url_alone_configures_the_database(empty_cwd: Path) -> None:
    db = load_settings(environ={"DATABASE_URL": "postgres://u:p@h/d"}).database
    assert db.configured is True
    assert db.dsn() == "postgres://u:p@h/d"


def test_empty_database_url_is_not_a_configuration(empty_cwd: Path) -> None:
    assert load_settings(environ={"DATABASE_URL": ""}).database.configured is False


# --- unknown environment variables ---------------------------------------------------------------


def test_unknown_rocket_env_vars_are_warnings_naming_the_closest_variable(empty_cwd: Path) -> None:
    environ = {
        "ROCKET_DATABSE_URL": "postgresql://x/y",
        "ROCKET_OTHER_TOOL_TOKEN": "x",
        "ROCKET_CONFIG": "",
        "ROCKET_TEST_DSN": "postgresql://t/t",
        "ROCKET_WEBHOOK_API_KEY": "for webhook headers",
        "ROCKETSHIP": "not ours",
    }
    with structlog.testing.capture_logs() as logs:
        settings = load_settings(environ=environ)
    assert settings.database.configured is False  # the misspelt URL is not used
    assert [(e["log_level"], e["event"]) for e in logs] == [
        ("warning", "ROCKET_DATABSE_URL: unknown variable, did you mean ROCKET_DATABASE_URL?"),
        ("warning", "ROCKET_OTHER_TOOL_TOKEN: unknown variable"),
    ]
    assert settings.unknown == tuple(e["event"] for e in logs)


def test_unknown_rocket_env_var_is_an_error_when_strict(empty_cwd: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"ROCKET_DATABSE_URL": "postgresql://x/y"}, strict=True)
    assert str(info.value) == (
        "ROCKET_DATABSE_URL: unknown variable, did you mean ROCKET_DATABASE_URL?"
    )


def test_variables_with_a_configured_webhook_env_prefix_are_not_unknown(empty_cwd: Path) -> None:
    environ = {"ROCKET_WEBHOOKS_ENV_PREFIX": "ROCKET_HOOK_", "ROCKET_HOOK_TOKEN": "t"}
    assert load_settings(environ=environ, strict=True).webhooks.env_prefix == "ROCKET_HOOK_"


def test_no_log_line_when_every_rocket_env_var_is_known(empty_cwd: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        load_settings(environ={"ROCKET_SERVER_PORT": "9000"})
    assert logs == []


# --- unknown file keys ---------------------------------------------------------------------------


def warnings_of(path: str) -> list[str]:
    with structlog.testing.capture_logs() as logs:
        settings = load_settings(path, environ={})
    assert all(e["log_level"] == "warning" for e in logs)
    assert settings.unknown == tuple(e["event"] for e in logs)
    return [str(e["event"]) for e in logs]


def test_unknown_key_in_file_is_a_warning_naming_the_dotted_path_and_a_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  prot: 8081\n  port: 8082\n")
    assert warnings_of(path) == [f"server.prot: unknown key, did you mean server.port? (in {path})"]
    assert load_settings(path, environ={}).server.port == 8082


def test_unknown_key_in_file_is_an_error_when_strict(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  prot: 8080\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={}, strict=True)
    assert str(info.value).startswith("server.prot: unknown key, did you mean server.port?")


def test_unknown_top_level_key_suggests_the_closest_key_anywhere(tmp_path: Path) -> None:
    path = write(tmp_path, "sever:\n  port: 1\nbackground_wrok: false\n")
    assert warnings_of(path) == [
        f"sever: unknown key, did you mean server? (in {path})",
        f"background_wrok: unknown key, did you mean background_work? (in {path})",
    ]


def test_ignored_upstream_key_in_another_section_is_unknown(tmp_path: Path) -> None:
    # `path` is only ignored under `database`, not elsewhere.
    path = write(tmp_path, "server:\n  path: x\n")
    assert warnings_of(path)[0].startswith("server.path: unknown key")


# --- secrets from files --------------------------------------------------------------------------


def test_database_password_file_supplies_the_password(tmp_path: Path, empty_cwd: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cr et/@\n", encoding="utf-8")
    environ = {
        "ROCKET_DATABASE_HOST": "db.internal",
        "ROCKET_DATABASE_USER": "rocket",
        "ROCKET_DATABASE_PASSWORD_FILE": str(secret),
    }
    db = load_settings(environ=environ).database
    assert db.configured and db.password == "s3cr et/@"
    assert db.dsn() == "postgresql://rocket:s3cr%20et%2F%40@db.internal:5432/rocket"
    assert "s3cr" not in db.masked_dsn() and "s3cr" not in repr(db)


def test_database_password_file_goes_into_a_url_without_password(
    tmp_path: Path, empty_cwd: Path
) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("pw", encoding="utf-8")
    environ = {
        "ROCKET_DATABASE_URL": "postgresql://rocket@db:5432/rocket?sslmode=require",
        "ROCKET_DATABASE_PASSWORD_FILE": str(secret),
    }
    db = load_settings(environ=environ).database
    assert db.dsn() == "postgresql://rocket:pw@db:5432/rocket?sslmode=require"
    assert db.dsn("rocket_shop") == "postgresql://rocket:pw@db:5432/rocket_shop?sslmode=require"


def test_database_password_file_problems_name_the_key(tmp_path: Path, empty_cwd: Path) -> None:
    missing = str(tmp_path / "nope")
    message = error_of(environ={"ROCKET_DATABASE_PASSWORD_FILE": missing})
    assert message.startswith(f"database.password_file: cannot read {missing}")
    secret = tmp_path / "pw"
    secret.write_text("pw", encoding="utf-8")
    both = {"ROCKET_DATABASE_PASSWORD": "x", "ROCKET_DATABASE_PASSWORD_FILE": str(secret)}
    assert error_of(environ=both).startswith(
        "database.password_file: set database.password or database.password_file, not both"
    )


def test_systemd_credentials_supply_secret_keys(tmp_path: Path, empty_cwd: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "database.password").write_text("from-credential\n", encoding="utf-8")
    (creds / "ROCKET_PLATFORM_JWT_SECRET").write_text(LONG_SECRET, encoding="utf-8")
    (creds / "server.port").write_text("1", encoding="utf-8")  # not a secret: not read
    (creds / "something-else").write_text("x", encoding="utf-8")
    environ = {
        "CREDENTIALS_DIRECTORY": str(creds),
        "ROCKET_DATABASE_HOST": "db",
        "ROCKET_DATABASE_USER": "rocket",
    }
    settings = load_settings(environ=environ, strict=True)
    assert settings.database.password == "from-credential"
    assert settings.platform_jwt_secret == LONG_SECRET
    assert settings.server.port == 8080
    # A ROCKET_* variable still wins over a credential.
    environ["ROCKET_DATABASE_PASSWORD"] = "from-env"
    assert load_settings(environ=environ).database.password == "from-env"


def test_a_bad_credential_is_checked_like_the_key(tmp_path: Path, empty_cwd: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "platform_jwt_secret").write_text("short", encoding="utf-8")
    message = error_of(environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert message.startswith("platform_jwt_secret: must be at least 32 bytes")
    assert "(from credential platform_jwt_secret)" in message and "short" not in message


# --- errors --------------------------------------------------------------------------------------


def test_wrong_type_in_file_is_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, 'server:\n  port: "abc"\n'))
    assert message.startswith("server.port: expected an integer, got 'abc'")


def test_mapping_where_a_scalar_belongs_is_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "server:\n  port:\n    value: 1\n"))
    assert message.startswith("server.port: expected an integer, got a mapping")


def test_scalar_where_a_section_belongs_is_an_error(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "server: 8080\n")).startswith("server: expected a mapping")


def test_boolean_is_not_accepted_as_an_integer(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "server:\n  port: true\n"))
    assert message.startswith("server.port: expected an integer, got a boolean")


def test_yaml_integer_is_accepted_for_a_float_key(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  shutdown_timeout: 3\ninstrumentation:\n  sampling_rate: 0\n")
    settings = load_settings(path, environ={})
    assert settings.server.shutdown_timeout == 3.0
    assert isinstance(settings.server.shutdown_timeout, float)
    assert settings.instrumentation.sampling_rate == 0.0


def test_number_for_a_string_key_asks_for_quoting(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "database:\n  name: 123\n"))
    assert message.startswith("database.name: expected a string, got 123")
    assert "quote" in message


def test_bad_env_value_names_the_key_and_the_variable(empty_cwd: Path) -> None:
    message = error_of(environ={"ROCKET_SERVER_PORT": "abc"})
    assert message == "server.port: expected an integer, got 'abc' (from ROCKET_SERVER_PORT)"


def test_bad_env_boolean_names_the_key_and_the_variable(empty_cwd: Path) -> None:
    message = error_of(environ={"ROCKET_INSTRUMENTATION_ENABLED": "maybe"})
    assert message.startswith("instrumentation.enabled: expected a boolean")
    assert message.endswith("(from ROCKET_INSTRUMENTATION_ENABLED)")


def test_bad_env_float_is_an_error(empty_cwd: Path) -> None:
    message = error_of(environ={"ROCKET_INSTRUMENTATION_SAMPLING_RATE": "half"})
    assert message.startswith("instrumentation.sampling_rate: expected a number")


@pytest.mark.parametrize(
    ("env", "text", "fragment"),
    [
        ("ROCKET_SERVER_PORT", "0", "server.port: must be between 1 and 65535"),
        ("ROCKET_SERVER_PORT", "70000", "server.port: must be between 1 and 65535"),
        ("ROCKET_DATABASE_PORT", "0", "database.port: must be between 1 and 65535"),
        ("ROCKET_SERVER_MAX_BODY_SIZE", "-1", "server.max_body_size: must be at least"),
        ("ROCKET_STORAGE_MAX_FILE_SIZE", "-5", "storage.max_file_size: must be at least"),
        ("ROCKET_STORAGE_DRIVER", "s3", "storage.driver: must be one of local, postgres"),
        ("ROCKET_STORAGE_CHUNK_SIZE", "1024", "storage.chunk_size: must be between 65536"),
        ("ROCKET_STORAGE_CHUNK_SIZE", "99999999", "storage.chunk_size: must be between 65536"),
        ("ROCKET_SERVER_SHUTDOWN_TIMEOUT", "-1", "server.shutdown_timeout: must be at least 0"),
        ("ROCKET_SERVER_SHUTDOWN_TIMEOUT", "nan", "server.shutdown_timeout: expected a finite"),
        ("ROCKET_LOG_FORMAT", "xml", "log.format: must be one of auto, console, json"),
        ("ROCKET_LOG_LEVEL", "verbose", "log.level: must be one of debug, info, warning, error"),
        ("ROCKET_DATABASE_DRIVER", "sqlite", "database.driver: rocketd supports only PostgreSQL"),
        ("ROCKET_INSTRUMENTATION_SAMPLING_RATE", "1.5", "instrumentation.sampling_rate: must be"),
        ("ROCKET_INSTRUMENTATION_SAMPLING_RATE", "-0.1", "instrumentation.sampling_rate: must"),
        ("ROCKET_AUTH_BCRYPT_COST", "3", "auth.bcrypt_cost: must be between 4 and 16"),
        ("ROCKET_AUTH_BCRYPT_COST", "17", "auth.bcrypt_cost: must be between 4 and 16"),
        ("ROCKET_AUTH_PASSWORD_MIN_LENGTH", "0", "auth.password_min_length: must be at least 1"),
        ("ROCKET_AUTH_ACCESS_TOKEN_TTL", "0", "auth.access_token_ttl: must be greater than 0"),
        ("ROCKET_AUTH_REFRESH_TOKEN_TTL", "-1", "auth.refresh_token_ttl: must be greater than 0"),
        ("ROCKET_DATABASE_POOL_SIZE", "0", "database.pool_size: must be at least 1"),
        ("ROCKET_APP_POOL_SIZE", "0", "app_pool_size: must be at least 1"),
        ("ROCKET_DATABASE_URL", "mysql://u@h/d", "database.url: expected a postgresql:// URL"),
    ],
)
def test_invalid_values_are_rejected_with_key_and_reason(
    empty_cwd: Path, env: str, text: str, fragment: str
) -> None:
    message = error_of(environ={env: text})
    assert message.startswith(fragment)
    assert message.endswith(f"(from {env})")


def test_sqlite_driver_in_file_says_only_postgresql_is_supported(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "database:\n  driver: sqlite\n"))
    assert message.startswith("database.driver: rocketd supports only PostgreSQL")


def test_host_without_user_is_missing_a_required_value(empty_cwd: Path) -> None:
    message = error_of(environ={"ROCKET_DATABASE_HOST": "db"})
    assert message.startswith("database.user: required")


def test_host_user_password_with_empty_name_is_missing_a_required_value(tmp_path: Path) -> None:
    path = write(tmp_path, 'database:\n  host: db\n  user: u\n  name: ""\n')
    message = error_of(path)
    assert message.startswith("database.name: required")
    assert path in message


def test_empty_name_is_rejected_for_the_embedded_database_too(empty_cwd: Path) -> None:
    message = error_of(environ={"ROCKET_DATABASE_NAME": ""})
    assert message == "database.name: must not be empty (from ROCKET_DATABASE_NAME)"


def test_url_does_not_need_user_or_name(empty_cwd: Path) -> None:
    environ = {"ROCKET_DATABASE_URL": "postgresql://db/", "ROCKET_DATABASE_NAME": ""}
    db = load_settings(environ=environ).database
    assert db.configured is True


def test_error_messages_do_not_echo_secret_values(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "database:\n  password: 987654321\n"))
    assert message.startswith("database.password: expected a string")
    assert "987654321" not in message
    message = error_of(environ={"ROCKET_DATABASE_URL": "mysql://u:hunter2@h/d"})
    assert "hunter2" not in message


# --- DSNs ----------------------------------------------------------------------------------------


def test_dsn_is_built_from_parts_with_percent_quoting() -> None:
    db = DatabaseSettings(host="db.example", port=6432, user="a b", password="p@ss:/w", name="m")
    assert db.dsn() == "postgresql://a%20b:p%40ss%3A%2Fw@db.example:6432/m"
    assert db.dsn("rocket_shop") == "postgresql://a%20b:p%40ss%3A%2Fw@db.example:6432/rocket_shop"


def test_dsn_without_credentials_has_no_user_info() -> None:
    assert DatabaseSettings().dsn() == "postgresql://localhost:5432/rocket"


def test_dsn_brackets_ipv6_hosts_and_encodes_socket_directories() -> None:
    assert DatabaseSettings(host="::1", user="u").dsn() == "postgresql://u@[::1]:5432/rocket"
    socket = DatabaseSettings(host="/run/postgresql", user="u").dsn()
    assert socket == "postgresql://u@%2Frun%2Fpostgresql:5432/rocket"


def test_dsn_from_url_is_the_url_itself() -> None:
    url = "postgresql://u:p@h:5/mgmt?sslmode=require"
    assert DatabaseSettings(url=url).dsn() == url


def test_dsn_from_url_replaces_only_the_database_and_keeps_query_params() -> None:
    db = DatabaseSettings(url="postgresql://u:p@h:5/mgmt?sslmode=require&application_name=r")
    assert db.dsn("rocket_shop") == (
        "postgresql://u:p@h:5/rocket_shop?sslmode=require&application_name=r"
    )
    assert DatabaseSettings(url="postgresql://h").dsn("x") == "postgresql://h/x"


def test_masked_dsn_hides_the_password() -> None:
    built = DatabaseSettings(host="h", user="u", password="s3cr:t")
    assert built.masked_dsn() == "postgresql://u:***@h:5432/rocket"
    from_url = DatabaseSettings(url="postgresql://u:s3cret@h/d?sslmode=require")
    assert from_url.masked_dsn() == "postgresql://u:***@h/d?sslmode=require"
    in_query = DatabaseSettings(url="postgresql://h/d?user=u&password=s3cret")
    assert "s3cret" not in in_query.masked_dsn()
    assert "password=***" in in_query.masked_dsn()


def test_masked_dsn_without_password_is_unchanged() -> None:
    assert DatabaseSettings(url="postgresql://u@h/d").masked_dsn() == "postgresql://u@h/d"


def test_directly_built_database_settings_infer_configured() -> None:
    assert DatabaseSettings().configured is False
    assert DatabaseSettings(url="postgresql://h/d").configured is True
    assert DatabaseSettings(host="db").configured is True


# --- secrecy -------------------------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    settings = Settings(
        database=DatabaseSettings(url="postgresql://u:urlpass@h/d", password="dbpass"),
        auth=config.AuthSettings(platform_admin_password="adminpass", app_admin_password="apppw"),
        ai=config.AISettings(api_key="sk-aikey"),
        jwt_secret="jwtsecret",
        platform_jwt_secret="platformsecret",
    )
    text = repr(settings)
    for secret in ("urlpass", "dbpass", "adminpass", "apppw", "sk-aikey", "jwtsecret"):
        assert secret not in text
    assert "platformsecret" not in text
    assert "platform_jwt_secret='***'" in text
    assert "postgresql://u:***@h/d" in text
    assert str(settings) == text


def test_loaded_settings_repr_hides_env_secrets(empty_cwd: Path) -> None:
    settings = load_settings(environ={"ROCKET_PLATFORM_JWT_SECRET": "topsecret" * 4})
    assert "topsecret" not in repr(settings)


# --- login throttling and trusted proxies -------------------------------------------------------


def test_login_throttle_defaults_are_the_documented_ones(empty_cwd: Path) -> None:
    throttle = load_settings(environ={}).auth.login_throttle
    assert throttle.enabled is True
    assert throttle.account_max_failures == 10
    assert throttle.account_window == 900.0  # 15 minutes
    assert throttle.backoff_initial == 30.0
    assert throttle.backoff_max == 900.0
    assert throttle.address_max_failures == 100
    assert throttle.address_window == 900.0
    assert load_settings(environ={}).server.trusted_proxies == ()


def test_login_throttle_section_nests_in_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, "auth:\n  login_throttle:\n    account_max_failures: 3\n    backoff_max: 60\n"
    )
    throttle = load_settings(path, environ={}).auth.login_throttle
    assert (throttle.account_max_failures, throttle.backoff_max) == (3, 60.0)
    [message] = warnings_of(
        write(tmp_path, "auth:\n  login_throttle:\n    account_max_failure: 3\n")
    )
    assert message.startswith(
        "auth.login_throttle.account_max_failure: unknown key,"
        " did you mean auth.login_throttle.account_max_failures?"
    )
    message = error_of(write(tmp_path, "auth:\n  login_throttle:\n    address_window: 0\n"))
    assert "auth.login_throttle.address_window" in message


def test_trusted_proxies_must_be_networks(empty_cwd: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"ROCKET_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"})
    assert "server.trusted_proxies" in str(err.value) and "proxy.local" in str(err.value)


def test_redis_url_is_checked_and_kept_secret(empty_cwd: Path) -> None:
    settings = load_settings(environ={"ROCKET_REDIS_URL": "redis://:hunter22@cache:6379/0"})
    assert "hunter22" not in repr(settings)
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"ROCKET_REDIS_URL": "http://:hunter22@cache/"})
    assert "redis.url" in str(err.value) and "hunter22" not in str(err.value)
    assert load_settings(environ={}).redis.url == ""


# --- reloading (SIGHUP) --------------------------------------------------------------------------


def test_changed_keys_and_live_values(tmp_path: Path, empty_cwd: Path) -> None:
    old = load_settings(write(tmp_path, "api:\n  max_per_page: 100\n"), environ={})
    new = load_settings(
        write(tmp_path, "api:\n  max_per_page: 5\nserver:\n  port: 9000\nlog:\n  level: debug\n"),
        environ={},
    )
    assert config.changed_keys(old, new) == ["server.port", "log.level", "api.max_per_page"]
    assert [key for key in config.changed_keys(old, new) if config.is_live(key)] == [
        "log.level",
        "api.max_per_page",
    ]
    running = dataclasses.replace(old, database=DatabaseSettings(url="postgresql://embedded/x"))
    applied = config.with_live_values(running, new)
    assert (applied.api.max_per_page, applied.log.level) == (5, "debug")
    assert applied.server.port == 8080 and applied.database.url == "postgresql://embedded/x"
    assert config.is_live("auth.login_throttle.backoff_max")
    assert not config.is_live("auth.bcrypt_cost") and not config.is_live("server.port")


def test_prepared_statements_are_on_by_default_and_off_means_no_prepare_threshold() -> None:
    on = DatabaseSettings()
    assert on.prepared_statements is True
    assert on.connection_kwargs() == {"autocommit": True}
    off = DatabaseSettings(prepared_statements=False)
    assert off.connection_kwargs() == {"autocommit": True, "prepare_threshold": None}
