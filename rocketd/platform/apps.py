"""App lifecycle in the management database: create, list, get, delete, and repair.

Creation order makes a crash at any point recoverable: the `_apps` row is written first with status
`provisioning` (the primary key doubles as the lock against two concurrent creates), then the
database is created and bootstrapped, then the row becomes `active`. Deletion marks the row
`deleting` first. At startup `repair_incomplete_apps` finishes or undoes whatever a crash left, so
there is never a ghost app (a row without its database, or a half-bootstrapped one served).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.auth.accounts import APP_TABLES, AccountService, TokenPolicy
from rocketd.auth.tokens import new_app_secret
from rocketd.config import Settings
from rocketd.db import notify
from rocketd.db.app_schema import APP_PLAN
from rocketd.db.migrations import apply_plan
from rocketd.db.notify import AppChanged
from rocketd.errors import Conflict, InternalError, NotFound, ValidationFailed
from rocketd.logging import get_logger
from rocketd.platform.app_names import db_name_for, validate_app_name
from rocketd.timestamps import iso_utc

log = get_logger("rocketd.apps")

STATUS_ACTIVE = "active"
STATUS_PROVISIONING = "provisioning"
STATUS_DELETING = "deleting"


@dataclass(frozen=True)
class AppRow:
    name: str
    display_name: str
    db_name: str
    db_driver: str
    status: str
    created_at: datetime | None
    updated_at: datetime | None
    jwt_secret: str = field(repr=False, default="")

    def to_json(self) -> dict[str, Any]:
        """AppInfo of the contract: never the secret."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "db_name": self.db_name,
            "db_driver": self.db_driver,
            "status": self.status,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
        }


_COLUMNS = sql.SQL(
    "name, display_name, db_name, db_driver, status, created_at, updated_at, jwt_secret"
)


def _row(r: dict[str, Any]) -> AppRow:
    return AppRow(**r)


@asynccontextmanager
async def app_lock(settings: Settings, name: str, *, wait: bool = True) -> AsyncIterator[bool]:
    """Hold the session advisory lock of one app's lifecycle (create, delete, repair).

    Yields whether the lock is held: with `wait=False` another instance may own it, in which case
    that instance is working on the app right now and the caller must leave it alone.
    """
    key = "rocketd:app:" + name
    # A session lock: on a connection of its own, straight to PostgreSQL (never via a pooler).
    async with await psycopg.AsyncConnection.connect(
        settings.database.direct_dsn(), autocommit=True
    ) as conn:
        if wait:
            await conn.execute("select pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            got = True
        else:
            cur = await conn.execute("select pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
            row = await cur.fetchone()
            got = bool(row and row[0])
        try:
            yield got
        finally:
            if got:
                await conn.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


async def list_apps(pool: AsyncConnectionPool[Any]) -> list[AppRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.SQL("select {} from _apps order by name").format(_COLUMNS))
        return [_row(r) for r in await cur.fetchall()]


async def find_app(pool: AsyncConnectionPool[Any], name: str) -> AppRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.SQL("select {} from _apps where name = %s").format(_COLUMNS), (name,))
        r = await cur.fetchone()
        return _row(r) if r else None


async def get_app(pool: AsyncConnectionPool[Any], name: str) -> AppRow:
    row = await find_app(pool, name)
    if row is None or row.status != STATUS_ACTIVE:
        raise NotFound("App not found")
    return row


def validate_create_request(
    name: object, display_name: object, db_driver: object
) -> tuple[str, str]:
    """Check a create request; return (name, display_name)."""
    app_name = validate_app_name(name)
    if display_name is not None and not isinstance(display_name, str):
        raise ValidationFailed("display_name must be a string")
    if db_driver not in (None, "", "postgres"):
        if db_driver == "sqlite":
            raise ValidationFailed(
                "db_driver 'sqlite' is not supported: rocketd runs on PostgreSQL"
            )
        raise ValidationFailed("db_driver must be 'postgres' or 'sqlite'")
    shown = display_name.strip() if isinstance(display_name, str) else ""
    if len(shown) > 200:
        raise ValidationFailed("display_name must be 200 characters or fewer")
    if "\x00" in shown:  # PostgreSQL text cannot hold it
        raise ValidationFailed("display_name must not contain NUL characters")
    return app_name, shown or app_name


async def _admin_connection(settings: Settings) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection to the management database for CREATE/DROP DATABASE (straight
    to PostgreSQL: databases are made and dropped beside a pooler, never through it)."""
    return await psycopg.AsyncConnection.connect(settings.database.direct_dsn(), autocommit=True)


async def database_exists(settings: Settings, db_name: str) -> bool:
    async with await _admin_connection(settings) as conn:
        cur = await conn.execute("select 1 from pg_database where datname = %s", (db_name,))
        return await cur.fetchone() is not None


async def create_app(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    name: object,
    display_name: object,
    db_driver: object,
) -> AppRow:
    """Create an app end to end; on any failure nothing of it is left behind."""
    app_name, shown = validate_create_request(name, display_name, db_driver)
    db_name = db_name_for(app_name)
    if db_name == settings.database.database_name:
        raise Conflict(f"App already exists: {app_name}")
    async with app_lock(settings, app_name):
        return await _create_locked(settings, pool, app_name, shown, db_name)


async def _create_locked(
    settings: Settings, pool: AsyncConnectionPool[Any], app_name: str, shown: str, db_name: str
) -> AppRow:
    try:
        async with pool.connection() as conn:
            await conn.execute(
                "insert into _apps (name, display_name, db_name, db_driver, jwt_secret, status)"
                " values (%s, %s, %s, 'postgres', %s, %s)",
                (app_name, shown, db_name, new_app_secret(), STATUS_PROVISIONING),
            )
    except pg_errors.UniqueViolation as exc:
        raise Conflict(f"App already exists: {app_name}") from exc
    if await database_exists(settings, db_name):
        # Not ours (no row pointed at it): never adopt or drop somebody else's database.
        await _delete_row(pool, app_name)
        raise Conflict(f"Database {db_name} already exists; choose another app name")
    try:
        await provision_database(settings, pool, app_name)
    except Exception as exc:
        log.error("app provisioning failed; rolling back", app=app_name, exc_info=True)
        await _drop_database(settings, db_name)
        await _delete_row(pool, app_name)
        raise InternalError(f"Failed to create app: {app_name}") from exc
    row = await find_app(pool, app_name)
    assert row is not None
    return row


async def provision_database(settings: Settings, pool: AsyncConnectionPool[Any], name: str) -> None:
    """Create (if missing) and bootstrap the app database, seed its admin, mark the app active."""
    db_name = db_name_for(name)
    if not await database_exists(settings, db_name):
        async with await _admin_connection(settings) as conn:
            await conn.execute(sql.SQL("create database {}").format(sql.Identifier(db_name)))
    await bootstrap_app_database(settings, db_name)
    async with pool.connection() as conn:
        await conn.execute(
            "update _apps set status = %s, updated_at = now() where name = %s",
            (STATUS_ACTIVE, name),
        )
        await notify.send(conn, AppChanged(name))
    log.info("app created", app=name, db_name=db_name)


async def bootstrap_app_database(settings: Settings, db_name: str) -> None:
    """Apply the app schema plan and seed the admin user (both idempotent)."""
    # Short sessions, without prepared statements (they may go through a pooler).
    unprepared: dict[str, Any] = {"prepare_threshold": None}
    async with await psycopg.AsyncConnection.connect(
        settings.database.dsn(db_name), **unprepared
    ) as conn:
        await apply_plan(conn, APP_PLAN)
        await conn.commit()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.database.dsn(db_name), min_size=1, max_size=1, open=False, kwargs=unprepared
    )
    await pool.open(wait=True)
    try:
        accounts = AccountService(pool, APP_TABLES, "", token_policy(settings))
        seeded = await accounts.seed_admin(
            settings.auth.app_admin_email, settings.auth.app_admin_password, ["admin"]
        )
        if seeded:
            log.warning(
                "seeded app admin with the configured default password; change it",
                db_name=db_name,
                email=settings.auth.app_admin_email,
            )
    finally:
        await pool.close()


def token_policy(settings: Settings) -> TokenPolicy:
    return TokenPolicy(
        access_ttl=settings.auth.access_token_ttl,
        refresh_ttl=settings.auth.refresh_token_ttl,
        bcrypt_cost=settings.auth.bcrypt_cost,
    )


async def delete_app(settings: Settings, pool: AsyncConnectionPool[Any], name: str) -> AppRow:
    """Mark the app deleting (other instances drop their pools on the notify), drop, forget."""
    async with app_lock(settings, name):
        return await _delete_locked(settings, pool, name)


async def _delete_locked(settings: Settings, pool: AsyncConnectionPool[Any], name: str) -> AppRow:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "update _apps set status = %s, updated_at = now() where name = %s returning db_name",
            (STATUS_DELETING, name),
        )
        found = await cur.fetchone()
        if found is None:
            raise NotFound("App not found or failed to delete: no such app")
        await notify.send(conn, AppChanged(name))
    row = await find_app(pool, name)
    assert row is not None
    await finish_delete(settings, pool, row)
    return row


async def finish_delete(settings: Settings, pool: AsyncConnectionPool[Any], row: AppRow) -> None:
    await _drop_database(settings, row.db_name)
    await _delete_row(pool, row.name)
    log.info("app deleted", app=row.name, db_name=row.db_name)


async def _drop_database(settings: Settings, db_name: str) -> None:
    async with await _admin_connection(settings) as conn:
        # WITH (FORCE) ends other instances' sessions that were slow to let go (PostgreSQL 13+).
        await conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db_name))
        )


async def _delete_row(pool: AsyncConnectionPool[Any], name: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("delete from _apps where name = %s", (name,))
        await notify.send(conn, AppChanged(name))


async def repair_incomplete_apps(settings: Settings, pool: AsyncConnectionPool[Any]) -> list[str]:
    """Finish or undo what a crash left; return the names of the apps touched."""
    touched: list[str] = []
    for listed in await list_apps(pool):
        if listed.status == STATUS_ACTIVE:
            continue
        async with app_lock(settings, listed.name, wait=False) as held:
            if not held:
                continue  # another instance is creating or deleting it right now
            row = await find_app(pool, listed.name)
            if row is not None and await _repair_locked(settings, pool, row):
                touched.append(row.name)
    return touched


async def _repair_locked(settings: Settings, pool: AsyncConnectionPool[Any], row: AppRow) -> bool:
    if row.status == STATUS_DELETING:
        log.warning("finishing an interrupted app deletion", app=row.name)
        await finish_delete(settings, pool, row)
        return True
    if row.status == STATUS_PROVISIONING:
        log.warning("finishing an interrupted app creation", app=row.name)
        try:
            await provision_database(settings, pool, row.name)
        except (psycopg.Error, OSError):
            log.error("could not finish app creation; removing it", app=row.name, exc_info=True)
            await finish_delete(settings, pool, row)
        return True
    return False
