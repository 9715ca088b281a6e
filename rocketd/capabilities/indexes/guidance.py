"""Index guidance: which lists asked for in the last hour would scan their whole table.

For each list shape an app served recently (`engine.read.list_shapes`), the statement an
uncounted page of that shape runs is `EXPLAIN`ed with the values of its last request and with
sequential scans and sorts priced out of reach (`enable_seqscan`, `enable_sort` off, in a
transaction of its own). If
no scan in the plan has an index condition (the filter is checked row by row), or the plan
sorts (no index hands the rows out in the order asked), the list reads every matching row,
whatever the table's size today. (On a small table the planner prefers a sequential scan
anyway, so asking it "would you scan?" would flag everything; asking "could you avoid it?" does
not.) Each such shape comes with the index that would serve it: the `eq` filters' fields, then
the sort (or the first range filter's field when the sort is the primary key alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.types.numeric import Int8
from psycopg_pool import AsyncConnectionPool

from rocketd.engine.read import list_shapes, query
from rocketd.engine.read.list_shapes import SeenShape
from rocketd.metadata.model import Entity
from rocketd.metadata.registry import Registry
from rocketd.timestamps import iso_utc

_SAMPLE_PAGE: Final = 25
_RANGE_OPERATORS: Final = frozenset({"gt", "gte", "lt", "lte"})


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def suggested_index(entity: Entity, seen: SeenShape) -> list[str]:
    """The `fields` of an index serving the shape (`-name`: descending)."""
    fields = [name for name, op in seen.filters if op == "eq"]
    sort = [(n, d) for n, d in seen.order if n != entity.primary_key.field]
    if sort:
        fields += [("-" if d else "") + n for n, d in sort if n not in fields]
    else:
        fields += [n for n, op in seen.filters if op in _RANGE_OPERATORS and n not in fields][:1]
    return fields[:8] or [name for name, _ in seen.filters][:1]


async def _unserved(conn: AsyncConnection[Any], entity: Entity, seen: SeenShape) -> bool:
    """Whether the best plan the database can find still reads past the filter (no scan with
    an index condition) or sorts (no index hands the rows out in order)."""
    statement = query.rows_statement(entity, seen.filters, seen.order)
    async with conn.transaction():
        await conn.execute("set local enable_seqscan = off")
        await conn.execute("set local enable_sort = off")
        cur = await conn.execute(
            b"EXPLAIN (FORMAT JSON) " + statement.as_bytes(conn),
            [*seen.params, Int8(_SAMPLE_PAGE + 1), Int8(0)],
        )
        row = await cur.fetchone()
    nodes = list(_plan_nodes(row[0][0]["Plan"] if row else {}))
    if seen.filters and not any("Index Cond" in node for node in nodes):
        return True
    sorted_by_key = len(seen.order) == 1  # the primary key alone: its index orders it
    return not sorted_by_key and any(node.get("Node Type") == "Sort" for node in nodes)


async def unindexed_lists(
    app_name: str, pool: AsyncConnectionPool[Any], registry: Registry
) -> list[dict[str, Any]]:
    """The recent list shapes of the app whose filter and sort no index serves."""
    found: list[dict[str, Any]] = []
    async with pool.connection() as conn:
        for seen in list_shapes.recent(app_name):
            entity = registry.entity(seen.entity)
            if entity is None or (not seen.filters and len(seen.order) == 1):
                continue  # gone, or the plain list by primary key (its index always exists)
            if any(name not in entity.field_map for name, _ in [*seen.filters, *seen.order]):
                continue  # a shape of an older definition
            if not await _unserved(conn, entity, seen):
                continue
            found.append(
                {
                    "entity": entity.name,
                    "filters": [{"field": f, "op": op} for f, op in seen.filters],
                    "sort": ",".join(("-" if d else "") + n for n, d in seen.order),
                    "seen": seen.count,
                    "last_seen": iso_utc(datetime.fromtimestamp(seen.last_seen, UTC)),
                    "suggested_index": {"fields": suggested_index(entity, seen), "unique": False},
                }
            )
    return found
