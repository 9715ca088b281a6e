"""Deleting old rows in batches: short statements and short locks, so a retention job never holds
a table for long nor writes one huge transaction (an autocommit connection commits each batch)."""

from __future__ import annotations

from typing import Any, Final, LiteralString

from psycopg import AsyncConnection, sql

BATCH: Final = 5000


async def delete_older_than(
    conn: AsyncConnection[Any],
    table: str,
    column: str,
    days: float,
    *,
    only: LiteralString = "true",
    batch: int = BATCH,
) -> int:
    """Delete rows of `table` whose `column` is more than `days` days old (and that match the
    fixed condition `only`), `batch` rows per statement; the number deleted."""
    statement = sql.SQL(
        "delete from {table} where ctid = any(array(select ctid from {table}"
        " where {column} < now() - make_interval(secs => %s) and ({only}) limit %s))"
    ).format(table=sql.Identifier(table), column=sql.Identifier(column), only=sql.SQL(only))
    deleted = 0
    while True:
        cur = await conn.execute(statement, (days * 86_400, batch))
        deleted += cur.rowcount
        if cur.rowcount < batch:
            return deleted
