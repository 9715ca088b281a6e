"""Builds everything, serves, and shuts down in order.

Start: embedded PostgreSQL (only when no database is configured) -> management database (created
if missing) and its schema -> platform secret and seeded admin (and a report of platform accounts
whose emails differ only in case) -> login throttle -> repair of half-made apps ->
supervisor, app actors (with what the installed capabilities contribute), metadata listener ->
each capability's `start` (services; background work such as the webhook dispatcher and the
workflow runner only with `background_work` on) -> scheduler -> HTTP server -> `READY=1`.
Stop (SIGTERM/SIGINT): `STOPPING=1` -> stop accepting and finish in-flight requests (bounded by
`server.shutdown_timeout`) -> stop actors -> close pools -> stop the embedded PostgreSQL -> exit 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import signal
from typing import Any

import psycopg
from aiohttp import web
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from rocketd import __version__
from rocketd.actors.app import AppActor
from rocketd.actors.directory import AppDirectory
from rocketd.actors.listener import MetadataListener
from rocketd.actors.scheduler import Scheduler
from rocketd.actors.supervisor import Supervisor
from rocketd.admin import serving as admin_ui
from rocketd.auth.accounts import PLATFORM_TABLES, AccountService
from rocketd.auth.throttle import LoginThrottle, ThrottleStore
from rocketd.auth.throttle_stores import PostgresThrottleStore, RedisThrottleStore
from rocketd.auth.tokens import new_app_secret
from rocketd.capabilities import INSTALLED
from rocketd.config import (
    ConfigError,
    DatabaseSettings,
    Settings,
    changed_keys,
    is_live,
    load_settings,
    with_live_values,
)
from rocketd.data_dir import EmbeddedDataDir
from rocketd.db import email_index
from rocketd.db.management_schema import MANAGEMENT_PLAN
from rocketd.db.migrations import apply_plan
from rocketd.engine.installation import Installation
from rocketd.engine.read.scope import ReadHooks
from rocketd.extensions import Capability, NoticeHandler, StartContext
from rocketd.http.app import create_app
from rocketd.http.server import HttpRunner
from rocketd.logging import configure_logging, get_logger
from rocketd.platform import account, apps
from rocketd.platform.capacity import check_connection_budget
from rocketd.services import Services
from rocketd.systemd import SystemdNotifier

log = get_logger("rocketd.runtime")

PLATFORM_SECRET_KEY = "platform_jwt_secret"  # noqa: S105 - a settings key name
REFRESH_PURGE_INTERVAL = 3600.0
THROTTLE_PURGE_INTERVAL = 900.0


async def _purge_app_tokens(actor: AppActor) -> None:
    await actor.accounts.purge_expired_refresh_tokens()


class StartRefused(Exception):
    """rocketd will not start in this state; the text (one line) says why and what to do."""


def is_loopback(host: str) -> bool:
    """Whether `server.host` accepts connections from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


async def refuse_default_password(settings: Settings, pool: AsyncConnectionPool[Any]) -> None:
    """Refuse to listen beyond loopback while a platform admin still has `changeme`."""
    if is_loopback(settings.server.host) or settings.auth.allow_default_password:
        return
    emails = await account.admins_with_default_password(pool, settings.auth.bcrypt_cost)
    if emails:
        raise StartRefused(
            f"server.host is {settings.server.host!r} (not loopback) but the platform admin"
            f" {', '.join(emails)} still has the default password 'changeme': set a new one with"
            " `rocketd platform set-password` (or auth.platform_admin_password before the first"
            " start), listen on 127.0.0.1, or set auth.allow_default_password: true"
        )


def settings_for_embedded(settings: Settings, server_dsn: str) -> Settings:
    """The settings with the database pointed at an embedded server (`server_dsn`)."""
    database = dataclasses.replace(
        settings.database,
        url=DatabaseSettings(url=server_dsn).dsn(settings.database.name),
        configured=True,
    )
    return dataclasses.replace(settings, database=database)


async def ensure_database(settings: Settings) -> None:
    """Create the management database when the server has none of that name yet."""
    # Straight to PostgreSQL: a pooler that tried a missing database waits before trying again.
    try:
        conn = await psycopg.AsyncConnection.connect(settings.database.direct_dsn())
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    else:
        await conn.close()
        return
    async with await psycopg.AsyncConnection.connect(
        settings.database.direct_dsn("postgres"), autocommit=True
    ) as admin:
        try:
            await admin.execute(
                sql.SQL("create database {}").format(
                    sql.Identifier(settings.database.database_name)
                )
            )
            log.info("created management database", name=settings.database.database_name)
        except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
            # Another instance created it a moment ago (a race inside the catalog shows up as
            # a unique violation on pg_database rather than DuplicateDatabase).
            pass


async def open_management_pool(settings: Settings) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.database.dsn(),
        min_size=1,
        max_size=max(2, settings.database.pool_size),
        kwargs=settings.database.connection_kwargs(),
        open=False,
        name="management",
    )
    await pool.open(wait=True, timeout=15)
    return pool


async def bootstrap_management(settings: Settings, pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        await conn.set_autocommit(False)
        try:
            await apply_plan(conn, MANAGEMENT_PLAN)
        finally:
            await conn.set_autocommit(True)


async def open_throttle_store(settings: Settings, pool: AsyncConnectionPool[Any]) -> ThrottleStore:
    """Redis when `redis.url` is set (it must answer now), else the management database."""
    if not settings.redis.url:
        return PostgresThrottleStore(pool)
    store = RedisThrottleStore(settings.redis.url, settings.redis.key_prefix)
    try:
        await store.ping()
    except RedisError as exc:
        await store.close()
        # An OSError: the CLI reports it as one line and exits 1.
        raise ConnectionError(f"redis.url does not answer: {exc}") from None
    log.info("login throttle counters are kept in Redis")
    return store


async def check_platform_emails(pool: AsyncConnectionPool[Any]) -> None:
    """Add the case-insensitive email index when it can be made; report what stops it."""
    async with pool.connection() as conn:
        duplicates = await email_index.ensure_case_insensitive_index(conn, PLATFORM_TABLES.users)
    email_index.report_duplicates(duplicates, "platform")


async def resolve_platform_secret(settings: Settings, pool: AsyncConnectionPool[Any]) -> str:
    # A configured one is at least 32 bytes (rocketd.config refuses shorter ones, such as
    # upstream's public default `changeme-platform-secret`).
    configured = settings.platform_jwt_secret
    if configured:
        return configured
    async with pool.connection() as conn:
        await conn.execute(
            "insert into _platform_settings (key, value) values (%s, %s)"
            " on conflict (key) do nothing",
            (PLATFORM_SECRET_KEY, new_app_secret()),
        )
        cur = await conn.execute(
            "select value from _platform_settings where key = %s", (PLATFORM_SECRET_KEY,)
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


def build_installation(capabilities: tuple[Capability, ...]) -> Installation:
    """What the installed capabilities give every app: parts, stages, read hooks, plans."""
    observers = [c.stage_observer for c in capabilities if c.stage_observer is not None]
    if len(observers) > 1:
        raise ValueError("more than one capability installs a stage observer")
    return Installation(
        parts=tuple(part for c in capabilities for part in c.snapshot_parts),
        stages=tuple(stage for c in capabilities for stage in c.stages),
        observer=observers[0] if observers else None,
        read_hooks=ReadHooks.combine(
            (c.name, c.read_hooks) for c in capabilities if c.read_hooks is not None
        ),
        schema_plans=tuple(c.schema for c in capabilities if c.schema is not None),
    )


def notice_handlers(capabilities: tuple[Capability, ...]) -> dict[type[Any], NoticeHandler]:
    handlers: dict[type[Any], NoticeHandler] = {}
    for capability in capabilities:
        for kind, handler in capability.notices.items():
            if kind in handlers:
                raise ValueError(f"notice {kind.__name__} is handled twice")
            handlers[kind] = handler
    return handlers


class Runtime:
    """One rocketd process: owns the embedded database (if any), pools, actors and HTTP."""

    def __init__(
        self,
        settings: Settings,
        capabilities: tuple[Capability, ...] = INSTALLED,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.settings = settings
        # As loaded, before the embedded database is filled in: what a reload compares with.
        self.loaded = settings
        self.capabilities = capabilities
        self.installation = build_installation(capabilities)
        self.started: StartContext | None = None
        self.embedded: EmbeddedDataDir | None = None
        self.services: Services | None = None
        self.http_runner: HttpRunner | None = None
        self.listener: MetadataListener | None = None
        # A worker of `serve --workers N` reports to its supervisor instead (rocketd.workers).
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self, *, http: bool = True) -> None:
        """Bring everything up; `http=False` leaves the listening socket to the caller (tests)."""
        settings = self.settings
        if not settings.database.configured:
            # The data-directory lock first: a second server on this directory stops here.
            self.embedded = EmbeddedDataDir(settings.data_dir)
            self.notifier.extend_timeout(120)
            dsn = await asyncio.to_thread(self.embedded.start)
            settings = self.settings = settings_for_embedded(settings, dsn)
            log.info("embedded PostgreSQL started", data_dir=os.path.abspath(settings.data_dir))
        log.info(
            "starting rocketd",
            version=__version__,
            database=settings.database.masked_dsn(),
            data_dir=os.path.abspath(settings.data_dir),
        )
        await ensure_database(settings)
        pool = await open_management_pool(settings)
        await bootstrap_management(settings, pool)
        platform_secret = await resolve_platform_secret(settings, pool)
        platform_accounts = AccountService(
            pool,
            PLATFORM_TABLES,
            platform_secret,
            apps.token_policy(settings),
            seeded_password=settings.auth.platform_admin_password,
        )
        if await platform_accounts.seed_admin(
            settings.auth.platform_admin_email,
            settings.auth.platform_admin_password,
            ["platform_admin"],
        ):
            log.warning(
                "seeded the platform admin with the configured default password; change it",
                email=settings.auth.platform_admin_email,
            )
        try:
            await refuse_default_password(settings, pool)
        except StartRefused:
            await pool.close()
            raise
        await check_platform_emails(pool)
        throttle_store = await open_throttle_store(settings, pool)
        login_throttle = LoginThrottle(throttle_store, settings.auth.login_throttle)
        await apps.repair_incomplete_apps(settings, pool)
        supervisor = Supervisor()
        directory = AppDirectory(
            settings,
            pool,
            supervisor,
            self.installation,
            notice_handlers(self.capabilities),
        )
        self.services = Services(
            settings=settings,
            management_pool=pool,
            platform_accounts=platform_accounts,
            login_throttle=login_throttle,
            directory=directory,
            supervisor=supervisor,
            platform_secret=platform_secret,
            capabilities=self.capabilities,
        )
        await directory.start_existing()
        await check_connection_budget(settings, await directory.active_app_count())
        self.listener = MetadataListener(
            settings.database.direct_dsn(),
            on_notify=directory.on_notify,
            on_reconnect=directory.on_reconnect,
        )
        await supervisor.add(self.listener)
        await self._start_capabilities(directory, supervisor)
        if not http:
            return
        await self._start_http()
        self.notifier.ready(f"listening on {settings.server.host}:{settings.server.port}")
        if self.notifier.watchdog_interval() is not None:
            self._watchdog = asyncio.create_task(self.notifier.run_watchdog(self._healthy))

    async def _start_capabilities(self, directory: AppDirectory, supervisor: Supervisor) -> None:
        """Each capability's `start`: the services every instance needs, and the background
        work (dispatcher, workflow runner, scheduled jobs) on instances with `background_work`.

        None of the background work serves a request: writes only insert outbox and instance
        rows and send their signal, which any instance with background work picks up
        (approve/reject advance their instance in the request itself). So an API-only instance
        skips all of it.
        """
        settings = self.settings
        background = settings.background_work
        # Session advisory locks: straight to PostgreSQL, never through a transaction pooler.
        scheduler = Scheduler(settings.database.direct_dsn()) if background else None
        ctx = self.started = StartContext(
            settings=settings,
            supervisor=supervisor,
            directory=directory,
            scheduler=scheduler,
            background=background,
            services=self.installation.services,
        )
        for capability in self.capabilities:
            if capability.start is not None:
                await capability.start(ctx)
        if scheduler is None:
            log.info(
                "background work is off on this instance (background_work: false): webhook"
                " deliveries, workflow steps and scheduled jobs run on instances that have it on"
            )
            return
        scheduler.add_job("purge-refresh-tokens", REFRESH_PURGE_INTERVAL, self._purge_tokens)
        scheduler.add_job(
            "purge-login-throttle", THROTTLE_PURGE_INTERVAL, self._purge_login_throttle
        )
        await supervisor.add(scheduler)

    async def _start_http(self) -> None:
        assert self.services is not None
        settings = self.settings
        web_app = create_app(self.services)
        admin_ui.add_routes(web_app)  # the admin UI's static files at /admin
        runner = HttpRunner(web_app, settings.server)
        await runner.setup()
        site = web.TCPSite(runner, settings.server.host, settings.server.port, reuse_port=True)
        await site.start()
        self.http_runner = runner
        log.info("listening", address=f"http://{settings.server.host}:{settings.server.port}")

    async def _healthy(self) -> bool:
        """The watchdog's check: the daemon's own actors, not any one app's (a failing app
        database answers 503 for that app; restarting the daemon would not fix it)."""
        return self.services is not None and not self.services.directory.daemon_not_running()

    async def _purge_tokens(self) -> None:
        assert self.services is not None
        await self.services.platform_accounts.purge_expired_refresh_tokens()
        await self.services.directory.each_running_app(_purge_app_tokens, what="token purge")

    async def _purge_login_throttle(self) -> None:
        assert self.services is not None
        await self.services.login_throttle.store.purge()

    def reload(self) -> None:
        """SIGHUP: reopen the logs, apply the keys that can change live, name the others.

        The configuration is read again as at start (same file, same environment); a new value
        of a key outside `config.LIVE_KEYS` is logged as needing a restart and left alone. An
        unusable configuration changes nothing.
        """
        try:
            new = load_settings(self.loaded.config_path)
        except ConfigError as err:
            configure_logging(
                self.loaded.log.level, self.loaded.log.format, file=self.loaded.log.file
            )
            log.error("reload: configuration error, nothing changed", error=str(err))
            return
        try:
            configure_logging(new.log.level, new.log.format, file=new.log.file)
        except OSError as err:  # the previous handler stays in place
            log.error("reload: cannot open log.file, nothing changed", error=str(err))
            return
        changed = changed_keys(self.loaded, new)
        applied = [key for key in changed if is_live(key)]
        ignored = [key for key in changed if not is_live(key)]
        self.loaded = with_live_values(self.loaded, new)
        self.settings = with_live_values(self.settings, new)
        if self.services is not None:
            self.services.settings = self.settings
            self.services.login_throttle.apply(self.settings.auth.login_throttle)
        log.info("reloaded: logs reopened", applied=applied)
        if ignored:
            log.warning("reload: these settings changed but need a restart", keys=ignored)

    async def stop(self) -> None:
        self.notifier.stopping()
        log.info("shutting down")
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.http_runner is not None:
            await self.http_runner.drain(self.settings.server.drain_delay)
            await self.http_runner.cleanup()  # stops accepting, drains in-flight requests
            self.http_runner = None
        if self.services is not None:
            await self.services.directory.stop_all()
            await self.services.supervisor.stop_all()
            if self.started is not None:
                await self.started.stop()
                self.started = None
            await self.services.login_throttle.store.close()
            await self.services.management_pool.close()
            self.services = None
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
            self.embedded = None
        log.info("stopped")


async def serve(settings: Settings, notifier: SystemdNotifier | None = None) -> int:
    """Run until SIGTERM or SIGINT; return the process exit code."""
    runtime = Runtime(settings, notifier=notifier)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, runtime.reload)
    try:
        await runtime.start()
        await stop.wait()
    finally:
        await runtime.stop()
    return 0
