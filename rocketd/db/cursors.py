"""One reusable cursor per connection for the hot statements of the data API.

`conn.execute()` and `conn.cursor()` build a new cursor for every statement: a cursor object,
its adapters map and its transformer, about 20 µs of CPU per statement on the benchmark machine
(docs/benchmarks.md, issue 18) - a get sends one statement, an update two, a nested create
three. `fetch_rows` runs a statement on a cursor kept on the connection instead.

This is safe because a statement's rows are fetched before anything else can run on the
connection: `execute` holds the connection's lock until the results are in, and the fetch that
follows reads them without giving the event loop a turn. The cursor returns plain tuples in
binary format, whatever row factory the connection has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import tuple_row

_ATTRIBUTE = "_rocketd_cursor"


def _cursor(conn: AsyncConnection[Any]) -> AsyncCursor[tuple[Any, ...]]:
    cursor: AsyncCursor[tuple[Any, ...]] | None = getattr(conn, _ATTRIBUTE, None)
    if cursor is None or cursor.closed:
        cursor = conn.cursor(row_factory=tuple_row)
        setattr(conn, _ATTRIBUTE, cursor)
    return cursor


async def fetch_rows(
    conn: AsyncConnection[Any], statement: bytes, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """Every row `statement` returns (binary format), through the connection's own cursor."""
    cursor = _cursor(conn)
    await cursor.execute(statement, params, binary=True)
    return await cursor.fetchall()
