"""PostgreSQL databases for tests: DSNs, unique names, scratch databases, and the drop that
cleans up after a test (used by the conftest fixtures and by tests that make their own)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from rocketd.config import DatabaseSettings
from tests.support.helpers import wait_until


def dsn_for(server_dsn: str, dbname: str) -> str:
    return DatabaseSettings(url=server_dsn).dsn(dbname)


def drop_databases(server_dsn: str, names: list[str]) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@contextmanager
def scratch_database(
    server_dsn: str, prefix: str, setup: Callable[[psycopg.Connection[Any]], None]
) -> Iterator[str]:
    """A new database `<prefix>_<hex>` prepared by `setup` (autocommit), dropped afterwards;
    yields its DSN."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(dsn_for(server_dsn, name), autocommit=True) as conn:
            setup(conn)
        yield dsn_for(server_dsn, name)
    finally:
        drop_databases(server_dsn, [name])


def app_databases(server_dsn: str, management_db: str) -> list[str]:
    """Databases named by the `_apps` table of a test's management database."""
    try:
        with psycopg.connect(dsn_for(server_dsn, management_db)) as conn:
            rows = conn.execute("select db_name from _apps").fetchall()
    except psycopg.Error:
        return []
    return [r[0] for r in rows]


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(5)}"


async def wait_for_lock_waiter(dsn: str, holder_pid: int, timeout: float = 10.0) -> None:
    """Wait until some backend is blocked on a lock held by backend `holder_pid` (polled from a
    connection of its own: the lock manager's view is live, unlike a transaction's snapshot of
    pg_stat_activity)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:

        async def blocked() -> bool:
            cur = await conn.execute(
                "select count(*) from pg_locks where not granted"
                " and %s = any(pg_blocking_pids(pid))",
                (holder_pid,),
            )
            row = await cur.fetchone()
            return bool(row and row[0])

        await wait_until(blocked, f"a backend waiting for a lock of backend {holder_pid}", timeout)
