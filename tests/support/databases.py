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
