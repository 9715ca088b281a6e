"""PostgreSQL databases for tests: DSNs, unique names, scratch databases, and the drop that
cleans up after a test (used by the conftest fixtures and by tests that make their own)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


class DeferredDrops:
    """Drops the databases a test leaves behind on background threads, so its teardown does not
    wait for them.

    Why: PostgreSQL 15's DROP DATABASE forces an immediate checkpoint and waits for it, 1-6 s on
    the shared test machine, and nearly every integration test leaves two databases behind (its
    management database and an app's). Drops running at the same time wait for the same
    checkpoint, so a few threads keep up with the suite. `wait` (called once at the end of the
    session by the conftest) waits for all of them and reports the ones that failed.
    """

    THREADS = 4  # each holds one connection while it drops; max_connections is shared

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, Future[None]]] = []

    def submit(self, server_dsn: str, names: Callable[[], list[str]], what: str) -> None:
        """Drop the databases `names()` returns (it runs on the background thread too)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.THREADS, thread_name_prefix="drop-db")
            future = self._executor.submit(lambda: drop_databases(server_dsn, names()))
            self._pending.append((what, future))

    def wait(self) -> list[str]:
        """Wait for every submitted drop; the failures, one line each."""
        with self._lock:
            pending, self._pending = self._pending, []
        failures = []
        for what, future in pending:
            exc = future.exception()
            if exc is not None:
                failures.append(f"{what}: {type(exc).__name__}: {exc}")
        return failures


DEFERRED_DROPS = DeferredDrops()


def drop_later(server_dsn: str, management_db: str) -> None:
    """Drop a management database and its apps' databases in the background (DeferredDrops)."""
    DEFERRED_DROPS.submit(
        server_dsn,
        lambda: [*app_databases(server_dsn, management_db), management_db],
        f"management database {management_db}",
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
