"""Daemon settings: one YAML file, overridden key by key from `ROCKET_*` environment variables.

The settings are frozen dataclasses, and the dataclasses *are* the schema: every field of a
section is a key, its annotation is the key's type, and `_key()` attaches the default, the value
check and whether the value is a secret. File keys, environment variable names, type conversion
and error messages are all derived from that, so a new key (or a whole new section) is added in
exactly one place:

    @dataclass(frozen=True, repr=False)
    class WebhookSettings(_Section):
        allow_networks: tuple[str, ...] = _key((), check=_networks)

    class Settings(_Section):
        ...
        webhooks: WebhookSettings = field(default_factory=WebhookSettings)

That alone makes `webhooks.allow_networks` valid in the file and `ROCKET_WEBHOOKS_ALLOW_NETWORKS`
(comma-separated) valid in the environment.

Every problem is a `ConfigError` whose text is a single line naming the key and what is wrong,
so `rocketd check-config` and the startup path can print it as is.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import structlog
import yaml

from rocketd.logging import mask_url as _mask_url

__all__ = [
    "AISettings",
    "ApiSettings",
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "InstrumentationSettings",
    "LogSettings",
    "LoginThrottleSettings",
    "MetricsSettings",
    "OutboundSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "WebhookSettings",
    "load_settings",
]

ENV_PREFIX: Final = "ROCKET_"
CONFIG_ENV: Final = "ROCKET_CONFIG"
# Looked up in the working directory when neither the caller nor ROCKET_CONFIG names a file.
DEFAULT_CONFIG_FILES: Final = ("etc/rocket.yaml", "app.yaml")
# ROCKET_* names that are never keys (test fixtures share the prefix).
# (`ROCKET_WEBHOOK_*` is the default prefix of variables webhook headers may send.)
_NOT_KEY_ENV_PREFIXES: Final = ("ROCKET_TEST_", "ROCKET_WEBHOOK_")


class ConfigError(Exception):
    """The configuration cannot be used; `str(err)` is one line naming the key and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


# --------------------------------------------------------------------------------------------
# Declaring keys
# --------------------------------------------------------------------------------------------

T = TypeVar("T")

# A check receives an already type-converted value and returns it (possibly normalised), or
# raises _Invalid with a short description of what is wrong.
Check = Callable[[Any], Any]


class _Invalid(ValueError):
    """A value of the right type that is not acceptable; the text says why."""


def _key(
    default: T,
    *,
    check: Check | None = None,
    secret: bool = False,
    env_aliases: tuple[str, ...] = (),
) -> T:
    """Declare a configuration key.

    `secret` keeps the value out of `repr()` and error messages. `env_aliases` are extra,
    non-`ROCKET_` environment variables consulted (in order) when the `ROCKET_` one is not set.
    """
    meta = {"check": check, "secret": secret, "env_aliases": env_aliases}
    return field(default=default, metadata=meta)


def _internal(default: T) -> T:
    """A dataclass field that is not a configuration key (computed or recorded by the loader)."""
    return field(default=default, metadata={"internal": True})


def _between(low: float, high: float) -> Check:
    def check(value: Any) -> Any:
        if not low <= value <= high:
            raise _Invalid(f"must be between {low} and {high}, got {value}")
        return value

    return check


def _at_least(low: float) -> Check:
    def check(value: Any) -> Any:
        if not value >= low:
            raise _Invalid(f"must be at least {low}, got {value}")
        return value

    return check


def _greater_than(low: float) -> Check:
    def check(value: Any) -> Any:
        if not value > low:
            raise _Invalid(f"must be greater than {low}, got {value}")
        return value

    return check


def _one_of(*choices: str) -> Check:
    """Case-insensitive choice; the value is normalised to the lower-case spelling."""

    def check(value: Any) -> Any:
        normal = str(value).strip().lower()
        if normal not in choices:
            raise _Invalid(f"must be one of {', '.join(choices)}, got {value!r}")
        return normal

    return check


def _not_empty(value: Any) -> Any:
    if not str(value).strip():
        raise _Invalid("must not be empty")
    return value


def _networks(value: Any) -> Any:
    import ipaddress

    for text in value:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _Invalid(f"{text!r} is not a CIDR network (e.g. 127.0.0.0/8)") from None
    return value


def _seed_password(value: Any) -> Any:
    # bcrypt uses at most 72 bytes; the seeded password must also pass the password policy.
    if not str(value):
        raise _Invalid("must not be empty")
    if len(str(value).encode()) > 72:
        raise _Invalid("must be at most 72 bytes (a bcrypt limit)")
    return value


# HS256 keys shorter than the hash output are guessable offline from any token (RFC 7518 3.2).
MIN_JWT_SECRET_BYTES: Final = 32


def _jwt_secret(value: Any) -> Any:
    # Empty means "generate one"; a short one is refused rather than used.
    if value and len(str(value).encode()) < MIN_JWT_SECRET_BYTES:
        raise _Invalid(
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes (a long random value, e.g. from"
            " `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`), or empty to"
            " let rocketd generate one"
        )
    return value


def _listen_address(value: Any) -> Any:
    """Empty, or `host:port` (IPv6 hosts in brackets) with a port in 1..65535."""
    if value == "":
        return value
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _Invalid("must be host:port, for example 127.0.0.1:9464")
    return value


def _postgres_driver(value: Any) -> Any:
    normal = str(value).strip().lower()
    if normal in ("postgres", "postgresql"):
        return "postgres"
    raise _Invalid(f"rocketd supports only PostgreSQL (driver: postgres), got {value!r}")


_URL_SCHEMES: Final = ("postgresql", "postgres")


def _postgres_url(value: Any) -> Any:
    # The URL may hold a password: describe problems without echoing it.
    url = str(value).strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise _Invalid(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in _URL_SCHEMES:
        shown = f"{parts.scheme!r}" if parts.scheme else "none"
        raise _Invalid(f"expected a postgresql:// URL, got scheme {shown}")
    return url


def _postgres_urls(value: Any) -> Any:
    return tuple(url for url in (_postgres_url(item) for item in value) if url)


_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")


def _redis_url(value: Any) -> Any:
    # The URL may hold a password: describe problems without echoing it.
    url = str(value).strip()
    if not url:
        return ""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise _Invalid(f"not a valid URL ({exc})") from None
    if scheme not in _REDIS_SCHEMES:
        shown = repr(scheme) if scheme else "none"
        raise _Invalid(f"expected a redis://, rediss:// or unix:// URL, got scheme {shown}")
    return url


# --------------------------------------------------------------------------------------------
# Settings dataclasses (the schema)
# --------------------------------------------------------------------------------------------


class _Section:
    """Shared `repr` for settings dataclasses: secrets are shown as '***', URLs are masked."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(cast(Any, self)):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                shown = "'***'" if value else "''"
            elif f.metadata.get("check") is _postgres_url:
                shown = repr(_mask_url(value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class ServerSettings(_Section):
    # Loopback by default: listening on every interface is a decision (see `allow_default_password`).
    host: str = _key("127.0.0.1", check=_not_empty)
    port: int = _key(8080, check=_between(1, 65535))
    max_body_size: int = _key(1_048_576, check=_at_least(1))
    shutdown_timeout: float = _key(10.0, check=_at_least(0))
    # Seconds between "not ready" and closing the listener on SIGTERM (rocketd.http.server).
    drain_delay: float = _key(0.0, check=_at_least(0))
    # Parsed by aiohttp before any middleware (rocketd.http.server answers in the error shape).
    max_request_line: int = _key(65_536, check=_at_least(1024))
    max_header_size: int = _key(8190, check=_at_least(1024))
    max_headers: int = _key(128, check=_at_least(16))
    header_timeout: float = _key(10.0, check=_greater_than(0))
    keepalive_timeout: float = _key(75.0, check=_greater_than(0))
    # Peers whose `X-Forwarded-For` is believed (CIDRs): the client address of a request that
    # comes through them is the nearest hop they did not add (rocketd.http.client_address).
    trusted_proxies: tuple[str, ...] = _key((), check=_networks)
    # Worker processes of `rocketd serve` (rocketd.workers); 0: one per core, at most 8.
    workers: int = _key(0, check=_between(0, 64))


@dataclass(frozen=True, repr=False)
class DatabaseSettings(_Section):
    # Upstream SQLite keys (Go: `path`, Express: `data_dir`): accepted in files, never used.
    IGNORED_KEYS: ClassVar[tuple[str, ...]] = ("path", "data_dir")
    # Giving any of these (non-empty) means "use this external server".
    CONNECTION_KEYS: ClassVar[tuple[str, ...]] = (
        "url",
        "host",
        "user",
        "password",
        "password_file",
    )

    driver: str = _key("postgres", check=_postgres_driver)
    url: str = _key("", check=_postgres_url, env_aliases=("DATABASE_URL",))
    host: str = _key("localhost")
    port: int = _key(5432, check=_between(1, 65535))
    user: str = _key("")
    password: str = _key("", secret=True)
    # A file holding the password (e.g. written by a secrets manager); its content, without the
    # trailing newline, becomes `password` at load time.
    password_file: str = _key("")
    name: str = _key("rocket")
    pool_size: int = _key(10, check=_at_least(1))
    # Server-side prepared statements (psycopg prepares a statement after it saw it a few
    # times): off behind a pooler that does not keep them per client (PgBouncer in
    # transaction mode).
    prepared_statements: bool = _key(True)
    # Direct to PostgreSQL, for what needs a session of its own (LISTEN, session advisory
    # locks) when `url` goes through a pooler in transaction mode (PgBouncer); empty: `url`.
    # Setting it also turns prepared statements off (the pooler's connections are shared).
    listen_url: str = _key("", check=_postgres_url)
    # Streaming replicas for the data API's lists and gets (rocketd.db.replicas); each URL's
    # database name is replaced by each app's. A caller's reads wait up to `replica_wait`
    # seconds for a replica to replay their last write, else read the primary.
    replica_urls: tuple[str, ...] = _key((), check=_postgres_urls)
    replica_wait: float = _key(0.5, check=_at_least(0))
    configured: bool = _internal(False)

    def __post_init__(self) -> None:
        # The loader passes `configured` explicitly (it knows which keys were given). For
        # instances built directly, infer it from values that differ from the defaults.
        if not self.configured and (
            self.url or self.user or self.password or self.host not in ("localhost", "")
        ):
            object.__setattr__(self, "configured", True)

    def connection_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of every pooled connection: autocommit, and no prepared
        statements when `prepared_statements` is off or a pooler is in front (`listen_url`:
        psycopg's `prepare_threshold=None`)."""
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self.prepared_statements or self.listen_url:
            kwargs["prepare_threshold"] = None
        return kwargs

    def dsn(self, dbname: str | None = None) -> str:
        """A libpq connection URL for the management database, or for `dbname` when given."""
        if self.url:
            if dbname is None:
                return self.url
            parts = urlsplit(self.url)
            return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
        netloc = _host_port(self.host, self.port)
        if self.user or self.password:
            userinfo = quote(self.user, safe="")
            if self.password:
                userinfo += ":" + quote(self.password, safe="")
            netloc = f"{userinfo}@{netloc}"
        name = self.name if dbname is None else dbname
        return f"postgresql://{netloc}/{quote(name, safe='')}"

    def direct_dsn(self, dbname: str | None = None) -> str:
        """Like `dsn()`, but straight to PostgreSQL (`listen_url`) when a pooler is in front."""
        if not self.listen_url:
            return self.dsn(dbname)
        parts = urlsplit(self.listen_url)
        name = self.database_name if dbname is None else dbname
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))

    def replica_dsns(self, dbname: str) -> list[str]:
        """The DSNs of `dbname` on each replica."""
        return [
            urlunsplit(urlsplit(url)._replace(path="/" + quote(dbname, safe="")))
            for url in self.replica_urls
        ]

    @property
    def database_name(self) -> str:
        """The management database's name: the URL's path when a URL is given, else `name`."""
        if self.url:
            path = urlsplit(self.url).path.lstrip("/")
            return unquote(path) if path else self.name
        return self.name

    def masked_dsn(self) -> str:
        """`dsn()` with any password replaced by `***` (for logs and messages)."""
        return _mask_url(self.dsn())


@dataclass(frozen=True, repr=False)
class LogSettings(_Section):
    format: str = _key("auto", check=_one_of("auto", "console", "json"))
    level: str = _key("info", check=_one_of("debug", "info", "warning", "error"))
    # Empty: standard error (the journal under systemd). A file is appended to, and reopened
    # on SIGHUP (after logrotate has moved it).
    file: str = _key("")


@dataclass(frozen=True, repr=False)
class LoginThrottleSettings(_Section):
    """Failed-attempt throttling of logins and invite acceptance (rocketd.auth.throttle)."""

    enabled: bool = _key(True)
    # Per account: this many failures within the window make the account answer 429 for a
    # backoff that starts at backoff_initial and doubles with each further failure, up to
    # backoff_max.
    account_max_failures: int = _key(10, check=_at_least(1))
    account_window: float = _key(900.0, check=_greater_than(0))
    backoff_initial: float = _key(30.0, check=_greater_than(0))
    backoff_max: float = _key(900.0, check=_greater_than(0))
    # Per client address: this many failures within the window make it answer 429 until the
    # oldest of them leaves the window.
    address_max_failures: int = _key(100, check=_at_least(1))
    address_window: float = _key(900.0, check=_greater_than(0))


@dataclass(frozen=True, repr=False)
class AuthSettings(_Section):
    access_token_ttl: int = _key(900, check=_greater_than(0))
    refresh_token_ttl: int = _key(604_800, check=_greater_than(0))
    bcrypt_cost: int = _key(10, check=_between(4, 16))
    password_min_length: int = _key(8, check=_at_least(1))
    platform_admin_email: str = _key("platform@localhost", check=_not_empty)
    platform_admin_password: str = _key("changeme", check=_seed_password, secret=True)
    app_admin_email: str = _key("admin@localhost", check=_not_empty)
    app_admin_password: str = _key("changeme", check=_seed_password, secret=True)
    # Start on a non-loopback `server.host` although a platform admin's password is still the
    # seeded `changeme` (refused otherwise: anyone who can reach the port could log in).
    allow_default_password: bool = _key(False)
    login_throttle: LoginThrottleSettings = field(default_factory=LoginThrottleSettings)


@dataclass(frozen=True, repr=False)
class StorageSettings(_Section):
    driver: str = _key("local", check=_one_of("local", "postgres"))
    local_path: str = _key("./uploads", check=_not_empty)
    max_file_size: int = _key(10_485_760, check=_at_least(1))
    # Bytes per `_file_chunks` row of the postgres driver (what one upload or download holds).
    chunk_size: int = _key(1_048_576, check=_between(65_536, 16_777_216))


@dataclass(frozen=True, repr=False)
class ApiSettings(_Section):
    default_per_page: int = _key(25, check=_between(1, 10_000))
    max_per_page: int = _key(100, check=_between(1, 10_000))


@dataclass(frozen=True, repr=False)
class InstrumentationSettings(_Section):
    enabled: bool = _key(True)
    retention_days: int = _key(7, check=_at_least(1))
    sampling_rate: float = _key(1.0, check=_between(0, 1))
    buffer_size: int = _key(500, check=_at_least(1))
    flush_interval_ms: int = _key(100, check=_at_least(1))
    # Events waiting in memory at most; past it the oldest are dropped (and counted).
    max_buffered: int = _key(20_000, check=_at_least(1))
    # OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); empty: no export.
    otlp_endpoint: str = _key("")


@dataclass(frozen=True, repr=False)
class MetricsSettings(_Section):
    # `/metrics` in the Prometheus text format; off by default (it tells about every app).
    enabled: bool = _key(False)
    # "host:port" of a separate listener for /metrics; empty: served on the API port.
    listen: str = _key("", check=_listen_address)


@dataclass(frozen=True, repr=False)
class AISettings(_Section):
    base_url: str = _key("")
    api_key: str = _key("", secret=True)
    model: str = _key("")


@dataclass(frozen=True, repr=False)
class OutboundSettings(_Section):
    # CIDRs that connections to tenant-configured hosts (webhook targets, and later SMTP
    # servers, identity providers, connectors) may reach although loopback, private,
    # link-local, metadata or reserved (upstream-gaps S16): one policy for all of them.
    allow_networks: tuple[str, ...] = _key((), check=_networks)


@dataclass(frozen=True, repr=False)
class WebhookSettings(_Section):
    # CIDRs opened to delivery although loopback/private/link-local/metadata (S16).
    allow_networks: tuple[str, ...] = _key((), check=_networks)
    # `{{env.NAME}}` in headers resolves only names with this prefix (S14).
    env_prefix: str = _key("ROCKET_WEBHOOK_", check=_not_empty)
    connect_timeout: float = _key(5.0, check=_greater_than(0))
    timeout: float = _key(30.0, check=_greater_than(0))  # whole async attempt
    sync_timeout: float = _key(5.0, check=_greater_than(0))  # before_* hooks (P6)
    max_response_bytes: int = _key(65_536, check=_at_least(0))
    retry_base_seconds: float = _key(30.0, check=_greater_than(0))
    sweep_interval: float = _key(10.0, check=_between(0.05, 30))
    concurrency: int = _key(16, check=_at_least(1))
    breaker_threshold: int = _key(5, check=_at_least(1))
    breaker_cooldown: float = _key(30.0, check=_greater_than(0))
    # HMAC-SHA256 key for the X-Rocket-Signature header; empty: requests are not signed.
    secret: str = _key("", secret=True)
    # Finished deliveries (delivered, failed) older than this many days are deleted hourly;
    # 0 keeps them.
    log_retention_days: float = _key(30.0, check=_at_least(0))


@dataclass(frozen=True, repr=False)
class RedisSettings(_Section):
    # Empty: the login throttle keeps its counters in PostgreSQL (the management database).
    url: str = _key("", check=_redis_url, secret=True)
    # Prepended to every key rocketd writes, so deployments can share one Redis.
    key_prefix: str = _key("rocketd:", check=_not_empty)


@dataclass(frozen=True, repr=False)
class Settings(_Section):
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    log: LogSettings = field(default_factory=LogSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    instrumentation: InstrumentationSettings = field(default_factory=InstrumentationSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    ai: AISettings = field(default_factory=AISettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    app_pool_size: int = _key(5, check=_at_least(1))
    # Seconds a request waits for a connection of its app's pool before that app answers 503
    # (a slow or unreachable app database never holds requests for long).
    app_pool_timeout: float = _key(5.0, check=_greater_than(0))
    # An app pool idle this long closes its last connection (and opens one on the next
    # request): many quiet apps cost no connections. 0: each app keeps one open.
    app_pool_idle_seconds: float = _key(300.0, check=_at_least(0))
    # Seconds between workflow timeout / resume sweeps (spec: at least every 60 s).
    workflow_tick_seconds: float = _key(5.0, check=_between(0.01, 60))
    # Finished workflow instances (any status but running) older than this many days, by their
    # last change, are deleted by an hourly job; 0 keeps them (the spec's default).
    workflow_retention_days: float = _key(0.0, check=_at_least(0))
    # Whether this instance runs the background work: webhook deliveries (the dispatcher), the
    # workflow runner and the scheduler's jobs. False makes an API-only instance; at least one
    # instance on the database must keep it on, or outbox rows and workflow instances wait.
    background_work: bool = _key(True)
    # Unused in multi-app mode (every app has its own secret); kept so upstream app.yaml loads.
    jwt_secret: str = _key("", secret=True)
    # Empty: generated on first boot and kept in the management database.
    platform_jwt_secret: str = _key("", check=_jwt_secret, secret=True)
    data_dir: str = _key("./data", check=_not_empty)
    config_path: str | None = _internal(None)
    # Keys of the file and ROCKET_* variables that match no key, one message each (warned about
    # at start; `rocketd check-config --strict` refuses them).
    unknown: tuple[str, ...] = _internal(())


# --------------------------------------------------------------------------------------------
# Schema derived from the dataclasses
# --------------------------------------------------------------------------------------------

_KIND_NAMES: Final = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "str": "a string",
    "list": "a list of strings",
}


@dataclass(frozen=True)
class _Key:
    path: tuple[str, ...]
    kind: str  # one of _KIND_NAMES
    container: type  # list or tuple, for kind == "list"
    check: Check | None
    secret: bool
    env: str
    env_aliases: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class _Node:
    """A section: a settings dataclass with its keys and subsections by name."""

    cls: type
    path: tuple[str, ...]
    children: dict[str, _Key | _Node]
    ignored: tuple[str, ...]


def _kind_of(tp: Any, where: str) -> tuple[str, type]:
    for kind, scalar in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if tp is scalar:
            return kind, scalar
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and args == (str,):
        return "list", list
    if origin is tuple and args == (str, ...):
        return "list", tuple
    raise TypeError(f"config key {where}: unsupported type {tp!r}")


def _build_schema(cls: type, path: tuple[str, ...] = ()) -> _Node:
    hints = typing.get_type_hints(cls)
    children: dict[str, _Key | _Node] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        sub = (*path, f.name)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            children[f.name] = _build_schema(tp, sub)
            continue
        kind, container = _kind_of(tp, ".".join(sub))
        children[f.name] = _Key(
            path=sub,
            kind=kind,
            container=container,
            check=f.metadata.get("check"),
            secret=bool(f.metadata.get("secret")),
            env=ENV_PREFIX + "_".join(part.upper() for part in sub),
            env_aliases=tuple(f.metadata.get("env_aliases", ())),
        )
    ignored = tuple(getattr(cls, "IGNORED_KEYS", ()))
    return _Node(cls=cls, path=path, children=children, ignored=ignored)


def _all_keys(node: _Node) -> list[_Key]:
    keys: list[_Key] = []
    for child in node.children.values():
        keys.extend(_all_keys(child) if isinstance(child, _Node) else [child])
    return keys


def _check_env_names(keys: list[_Key]) -> dict[str, _Key]:
    by_env: dict[str, _Key] = {}
    for key in keys:
        other = by_env.setdefault(key.env, key)
        if other is not key:  # e.g. `a_b.c` and `a.b_c`: a schema bug, caught at import
            raise TypeError(f"config keys {other.dotted} and {key.dotted} share {key.env}")
    return by_env


_SCHEMA: Final = _build_schema(Settings)
_check_env_names(_all_keys(_SCHEMA))  # a clash is a bug in the schema: fail at import


# --------------------------------------------------------------------------------------------
# Value conversion
# --------------------------------------------------------------------------------------------

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


def _describe(value: Any, secret: bool) -> str:
    """A short, one-line rendering of a bad value for an error message."""
    if isinstance(value, bool):
        return "a boolean" if secret else f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing"
    if secret:
        return f"a value of type {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_error(key: _Key, value: Any) -> _Invalid:
    return _Invalid(f"expected {_KIND_NAMES[key.kind]}, got {_describe(value, key.secret)}")


def _from_yaml(key: _Key, value: Any) -> Any:
    """Accept a value parsed from YAML if it has the key's type (no string coercion)."""
    if key.kind == "bool":
        if isinstance(value, bool):
            return value
    elif key.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif key.kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _finite(float(value))
    elif key.kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise _Invalid(f"{_type_error(key, value)} (quote the value in YAML)")
    elif key.kind == "list":
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return key.container(value)
    raise _type_error(key, value)


def _from_env(key: _Key, text: str) -> Any:
    """Convert an environment variable's text to the key's type."""
    if key.kind == "str":
        return text
    if key.kind == "list":
        return key.container(item.strip() for item in text.split(",") if item.strip())
    raw = text.strip()
    if key.kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise _Invalid(
            f"expected a boolean (true/false, yes/no, on/off, 1/0), "
            f"got {_describe(text, key.secret)}"
        )
    try:
        number: float = int(raw) if key.kind == "int" else float(raw)
    except ValueError:
        raise _type_error(key, text) from None
    return number if key.kind == "int" else _finite(number)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _Invalid(f"expected a finite number, got {value}")
    return value


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Given:
    """A value supplied for a key, converted and checked, with where it came from."""

    value: Any
    origin: str  # "from ROCKET_X", "in /path/rocket.yaml"


def _fail(key: _Key | str, problem: str, origin: str) -> ConfigError:
    name = key if isinstance(key, str) else key.dotted
    suffix = f" ({origin})" if origin else ""
    return ConfigError(f"{name}: {problem}{suffix}")


def _accept(key: _Key, value: Any, origin: str, convert: Callable[[_Key, Any], Any]) -> _Given:
    try:
        converted = convert(key, value)
        if key.check is not None:
            converted = key.check(converted)
    except _Invalid as exc:
        raise _fail(key, str(exc), origin) from None
    return _Given(converted, origin)


def _choose_file(config_path: str | None, environ: Mapping[str, str]) -> Path | None:
    if config_path:
        explicit, origin = config_path, ""
    elif environ.get(CONFIG_ENV):
        explicit, origin = environ[CONFIG_ENV], f" (from {CONFIG_ENV})"
    else:
        for candidate in DEFAULT_CONFIG_FILES:
            if Path(candidate).is_file():
                return Path(os.path.abspath(candidate))
        return None
    path = Path(explicit).expanduser()
    if not path.exists():
        raise ConfigError(f"config file not found: {explicit}{origin}")
    return Path(os.path.abspath(path))


def _read_file(path: Path) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of settings, got {_describe(data, False)}"
        )
    return data


def _suggestion(name: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f", did you mean {prefix}{close[0]}?" if close else ""


def _walk_file(
    node: _Node, data: dict[Any, Any], origin: str, given: dict[str, _Given], unknown: list[str]
) -> None:
    for raw_name, value in data.items():
        name = str(raw_name)
        dotted = ".".join((*node.path, name))
        child = node.children.get(name)
        if child is None:
            if name in node.ignored:
                continue
            near = [".".join((*node.path, other)) for other in node.children]
            hint = _suggestion(dotted, near) or _suggestion(
                dotted, [key.dotted for key in _all_keys(_SCHEMA)]
            )
            unknown.append(f"{dotted}: unknown key{hint} ({origin})")
            continue
        if value is None:  # `key:` with nothing after it means "use the default"
            continue
        if isinstance(child, _Node):
            if not isinstance(value, dict):
                raise _fail(dotted, f"expected a mapping, got {_describe(value, False)}", origin)
            _walk_file(child, value, origin, given, unknown)
        else:
            given[child.dotted] = _accept(child, value, origin, _from_yaml)


CREDENTIALS_ENV: Final = "CREDENTIALS_DIRECTORY"


def _apply_credentials(
    keys: list[_Key], environ: Mapping[str, str], given: dict[str, _Given]
) -> None:
    """Secrets from systemd's `LoadCredential=`: a file named after a secret key's dotted path
    (`database.password`) or its variable (`ROCKET_DATABASE_PASSWORD`) in $CREDENTIALS_DIRECTORY.
    Other files there are left alone (the directory is shared with other credentials)."""
    directory = environ.get(CREDENTIALS_ENV)
    if not directory:
        return
    for key in keys:
        if not key.secret:
            continue
        for name in (key.dotted, key.env):
            path = Path(directory) / name
            if path.is_file():
                origin = f"from credential {name}"
                given[key.dotted] = _accept(key, _read_secret(key.dotted, path), origin, _from_env)
                break


def _read_secret(key: str, path: Path) -> str:
    """A secret file's content without the trailing newline (never shown in messages)."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def _apply_env(keys: list[_Key], environ: Mapping[str, str], given: dict[str, _Given]) -> None:
    for key in keys:
        for name in (key.env, *key.env_aliases):
            text = environ.get(name)
            # The ROCKET_ variable counts whenever it is set; a foreign alias only when non-empty.
            if text is None or (name != key.env and not text):
                continue
            given[key.dotted] = _accept(key, text, f"from {name}", _from_env)
            break


def _unknown_env(
    known: Mapping[str, _Key], environ: Mapping[str, str], foreign_prefixes: tuple[str, ...]
) -> list[str]:
    names = sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and name != CONFIG_ENV
        and not name.startswith((*_NOT_KEY_ENV_PREFIXES, *foreign_prefixes))
        and name not in known
    )
    # Compared without the shared prefix, which would make every name look alike.
    bare = [name.removeprefix(ENV_PREFIX) for name in known]
    return [
        f"{name}: unknown variable{_suggestion(name.removeprefix(ENV_PREFIX), bare, ENV_PREFIX)}"
        for name in names
    ]


def _read_values(
    schema: _Node, config_path: str | None, environ: Mapping[str, str]
) -> tuple[dict[str, _Given], Path | None, list[str]]:
    """Collect the checked values given for `schema`'s keys by the file, the credentials and
    the environment, and the file keys that match none."""
    keys = _all_keys(schema)
    given: dict[str, _Given] = {}
    unknown: list[str] = []
    path = _choose_file(config_path, environ)
    if path is not None:
        _walk_file(schema, _read_file(path), f"in {path}", given, unknown)
    _apply_credentials(keys, environ, given)
    _apply_env(keys, environ, given)
    return given, path, unknown


def _instantiate(node: _Node, given: dict[str, _Given]) -> Any:
    kwargs: dict[str, Any] = {}
    for name, child in node.children.items():
        if isinstance(child, _Node):
            kwargs[name] = _instantiate(child, given)
        elif child.dotted in given:
            kwargs[name] = given[child.dotted].value
    return node.cls(**kwargs)


def _database(db: DatabaseSettings, given: dict[str, _Given]) -> DatabaseSettings:
    """Decide whether an external database is configured, and require what that needs."""
    explicit = [
        name
        for name in DatabaseSettings.CONNECTION_KEYS
        if f"database.{name}" in given and given[f"database.{name}"].value
    ]
    db = dataclasses.replace(db, configured=bool(explicit))
    if db.password_file:
        db = _password_from_file(db, given)
    if db.url:
        return db
    for name in ("user", "name"):
        if getattr(db, name).strip():
            continue
        where = given.get(f"database.{name}")
        origin = where.origin if where else ""
        if db.configured:
            problem = (
                "required when the database is given by host/user/password "
                "(set it, or set database.url instead)"
            )
            raise _fail(f"database.{name}", problem, origin)
        if name == "name":  # the embedded server needs a management database name too
            raise _fail("database.name", "must not be empty", origin)
    return db


def _password_from_file(db: DatabaseSettings, given: dict[str, _Given]) -> DatabaseSettings:
    """`database.password_file`'s content as the password (in the URL when one is given)."""
    origin = given["database.password_file"].origin if "database.password_file" in given else ""
    if db.password:
        problem = "set database.password or database.password_file, not both"
        raise _fail("database.password_file", problem, origin)
    password = _read_secret("database.password_file", Path(db.password_file).expanduser())
    if not db.url:
        return dataclasses.replace(db, password=password)
    parts = urlsplit(db.url)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        problem = "the database.url has a password already; remove one of them"
        raise _fail("database.password_file", problem, origin)
    user = userinfo if at else ""
    netloc = f"{user}:{quote(password, safe='')}@{hostinfo}"
    return dataclasses.replace(db, password=password, url=urlunsplit(parts._replace(netloc=netloc)))


def load_settings(
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
) -> Settings:
    """Read the settings: defaults, then the YAML file, then `ROCKET_*` environment variables.

    The file is `config_path`, else `$ROCKET_CONFIG`, else `./etc/rocket.yaml`, else `./app.yaml`
    (the upstream layout), else none. A file named explicitly must exist. Secret keys may also
    come from systemd credentials ($CREDENTIALS_DIRECTORY). Raises `ConfigError` (one line,
    naming the key) for anything unusable.

    File keys and `ROCKET_*` variables that match no key are logged as warnings naming the
    closest valid key (and kept in `Settings.unknown`); with `strict` they are an error.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    given, path, unknown = _read_values(_SCHEMA, config_path, env)
    settings = cast(Settings, _instantiate(_SCHEMA, given))
    foreign = (settings.webhooks.env_prefix,)  # variables webhook headers may read
    unknown += _unknown_env(_check_env_names(_all_keys(_SCHEMA)), env, foreign)
    if strict and unknown:
        raise ConfigError("; ".join(unknown))
    log = structlog.get_logger("rocketd.config")
    for problem in unknown:
        log.warning(problem)
    return dataclasses.replace(
        settings,
        database=_database(settings.database, given),
        config_path=None if path is None else str(path),
        unknown=tuple(unknown),
    )


# --------------------------------------------------------------------------------------------
# Reloading (SIGHUP)
# --------------------------------------------------------------------------------------------

# What a running server takes from a reloaded configuration (rocketd.runtime.Runtime.reload):
# keys read afresh on every use, plus the logging set-up and the login throttle's limits, which
# the reload re-applies. Dotted keys, or a section followed by ".".
LIVE_KEYS: Final = (
    "log.",
    "api.",
    "server.trusted_proxies",
    "auth.login_throttle.",
)


def is_live(dotted: str) -> bool:
    """Whether a running server applies a new value of this key on reload."""
    return any(dotted == key or (key.endswith(".") and dotted.startswith(key)) for key in LIVE_KEYS)


def _value_at(settings: Settings, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for name in path:
        value = getattr(value, name)
    return value


def _replaced_at(section: Any, path: tuple[str, ...], value: Any) -> Any:
    head, rest = path[0], path[1:]
    inner = _replaced_at(getattr(section, head), rest, value) if rest else value
    return dataclasses.replace(section, **{head: inner})


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """The dotted keys whose value differs between two loaded configurations."""
    return [
        key.dotted
        for key in _all_keys(_SCHEMA)
        if _value_at(old, key.path) != _value_at(new, key.path)
    ]


def with_live_values(running: Settings, new: Settings) -> Settings:
    """`running` with the live keys' values taken from `new` (the rest stays as it is)."""
    for key in _all_keys(_SCHEMA):
        if is_live(key.dotted):
            running = _replaced_at(running, key.path, _value_at(new, key.path))
    return running


# --------------------------------------------------------------------------------------------
# URL helpers
# --------------------------------------------------------------------------------------------


def _host_port(host: str, port: int) -> str:
    if host.startswith("/"):  # a Unix socket directory: libpq takes it percent-encoded
        host = quote(host, safe="")
    elif ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"
