"""Reading `_events`: the filtered list, one trace as a span tree, and the aggregate stats.

Every filter is checked before any SQL runs (a UUID column compared with a non-UUID, or a
malformed date, would otherwise be a database error): bad input is a 400 naming the parameter.
The statistics are computed by PostgreSQL (`percentile_cont`), never by loading rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.errors import BadRequest, ErrorDetail, NotFound

EXACT_FILTERS: Final = (
    "source",
    "component",
    "action",
    "entity",
    "event_type",
    "trace_id",
    "user_id",
    "status",
)
UUID_FILTERS: Final = frozenset({"trace_id", "user_id"})
LIST_PARAMS: Final = frozenset({*EXACT_FILTERS, "from", "to", "page", "per_page", "sort"})
STATS_PARAMS: Final = frozenset({"from", "to", "entity"})
DEFAULT_PER_PAGE: Final = 50
MAX_PER_PAGE: Final = 100
MAX_FILTER_LENGTH: Final = 200
SLOWEST_TRACES: Final = 10
MAX_ACTIONS: Final = 50
ROW_COLUMNS: Final = sql.SQL(
    "id, trace_id, span_id, parent_span_id, event_type, source, component, action, entity,"
    " record_id, user_id, duration_ms, status, metadata, created_at"
)

Where = tuple[sql.Composable, list[Any]]


def _bad(message: str, field: str, detail: str) -> BadRequest:
    return BadRequest(message, [ErrorDetail(detail, field=field, rule="invalid")])


def _check_known(params: Mapping[str, str], known: Iterable[str]) -> None:
    allowed = frozenset(known)
    unknown = sorted({k for k in params if k not in allowed})
    if unknown:
        raise BadRequest(
            "Invalid query parameters",
            [
                ErrorDetail(
                    f"unknown parameter '{k}'; allowed: {', '.join(sorted(allowed))}",
                    field=k,
                    rule="unknown",
                )
                for k in unknown
            ],
        )


def _timestamp(params: Mapping[str, str], key: str) -> datetime | None:
    text = params.get(key)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad(
            "Invalid query parameters", key, f"{key} must be an ISO 8601 timestamp"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _time_range(params: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    start, end = _timestamp(params, "from"), _timestamp(params, "to")
    if start is not None and end is not None and start > end:
        raise _bad("Invalid query parameters", "from", "from must not be after to")
    return start, end


def _conditions(params: Mapping[str, str], exact: Iterable[str]) -> Where:
    parts: list[sql.Composable] = []
    values: list[Any] = []
    for key in exact:
        value = params.get(key)
        if value is None:
            continue
        if len(value) > MAX_FILTER_LENGTH:
            raise _bad("Invalid query parameters", key, f"{key} is too long")
        if key in UUID_FILTERS:
            try:
                value = str(uuid.UUID(value))
            except ValueError:
                raise _bad("Invalid query parameters", key, f"{key} must be a UUID") from None
        parts.append(sql.SQL("{} = %s").format(sql.Identifier(key)))
        values.append(value)
    start, end = _time_range(params)
    if start is not None:
        parts.append(sql.SQL("created_at >= %s"))
        values.append(start)
    if end is not None:
        parts.append(sql.SQL("created_at <= %s"))
        values.append(end)
    if not parts:
        return sql.SQL("true"), values
    return sql.SQL(" and ").join(parts), values


def _positive_int(params: Mapping[str, str], key: str, default: int) -> int:
    text = params.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise _bad("Invalid query parameters", key, f"{key} must be an integer") from None


def paging(params: Mapping[str, str]) -> tuple[int, int]:
    """(page, per_page): per_page above 100 becomes 100, below 1 becomes 50 (spec)."""
    page = _positive_int(params, "page", 1)
    if page < 1:
        raise _bad("Invalid query parameters", "page", "page must be at least 1")
    per_page = _positive_int(params, "per_page", DEFAULT_PER_PAGE)
    if per_page < 1:
        per_page = DEFAULT_PER_PAGE
    return page, min(per_page, MAX_PER_PAGE)


async def list_events(
    pool: AsyncConnectionPool[Any], params: Mapping[str, str]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    _check_known(params, LIST_PARAMS)
    where, values = _conditions(params, EXACT_FILTERS)
    page, per_page = paging(params)
    order = sql.SQL("asc" if params.get("sort") == "created_at" else "desc")
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("select count(*) from _events where {}").format(where), values
        )
        counted = await cur.fetchone()
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL(
                "select {} from _events where {} order by created_at {}, id limit %s offset %s"
            ).format(ROW_COLUMNS, where, order),
            [*values, per_page, (page - 1) * per_page],
        )
        rows = await cur.fetchall()
    total = int(counted[0]) if counted else 0
    return rows, {"page": page, "per_page": per_page, "total": total}


async def get_trace(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    """The trace as a tree: `root_span` with nested `children`, the flat `spans` (oldest first),
    the root's duration and the critical path (from the root, the longest child at each level)."""
    try:
        trace_id = str(uuid.UUID(raw_id))
    except ValueError:
        trace_id = ""
    rows: list[dict[str, Any]] = []
    if trace_id:
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                sql.SQL(
                    "select {} from _events where trace_id = %s order by created_at asc"
                ).format(ROW_COLUMNS),
                [trace_id],
            )
            rows = await cur.fetchall()
    if not rows:
        raise NotFound(f"Trace not found: {raw_id[:100]}")
    return span_tree(trace_id, rows)


def span_tree(trace_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    nodes = [{**row, "children": []} for row in rows]
    by_span = {str(node["span_id"]): node for node in nodes}
    roots = []
    for node in nodes:
        parent = node["parent_span_id"]
        holder = by_span.get(str(parent)) if parent is not None else None
        if holder is not None and holder is not node:
            holder["children"].append(node)
        elif parent is None:
            roots.append(node)
    http_roots = [n for n in roots if n["source"] == "http"]
    root = (http_roots or roots or nodes)[0]
    return {
        "trace_id": trace_id,
        "root_span": root,
        "spans": nodes,
        "total_duration_ms": root["duration_ms"],
        "critical_path": critical_path(root),
    }


def critical_path(root: dict[str, Any]) -> list[str]:
    """Span ids from the root down, taking the child with the longest duration at each level."""
    path = [str(root["span_id"])]
    node = root
    seen = {path[0]}
    while True:
        timed = [c for c in node["children"] if c["duration_ms"] is not None]
        if not timed:
            return path
        node = max(timed, key=lambda c: c["duration_ms"])
        span_id = str(node["span_id"])
        if span_id in seen:
            return path
        seen.add(span_id)
        path.append(span_id)


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


async def stats(pool: AsyncConnectionPool[Any], params: Mapping[str, str]) -> dict[str, Any]:
    _check_known(params, STATS_PARAMS)
    where, values = _conditions(params, ("entity",))
    p95 = sql.SQL("percentile_cont(0.95) within group (order by duration_ms)")
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL(
                "select count(*), avg(duration_ms), {p95},"
                " count(*) filter (where status = 'error') from _events where {where}"
            ).format(p95=p95, where=where),
            values,
        )
        total_row = await cur.fetchone()
        grouped = sql.SQL(
            "select {keys}, count(*), avg(duration_ms), {p95},"
            " count(*) filter (where status = 'error') from _events"
            " where {where} and duration_ms is not null"
            " group by {keys} order by count(*) desc, {keys} limit %s"
        )
        cur = await conn.execute(
            grouped.format(keys=sql.SQL("source"), p95=p95, where=where), [*values, 1000]
        )
        by_source = await cur.fetchall()
        keys = sql.SQL("source, entity, action")
        cur = await conn.execute(
            grouped.format(keys=keys, p95=p95, where=where), [*values, MAX_ACTIONS]
        )
        by_action = await cur.fetchall()
        cur = await conn.execute(
            sql.SQL(
                "select trace_id, action, metadata->>'path', duration_ms, created_at"
                " from _events where {} and parent_span_id is null and event_type = 'system'"
                " and duration_ms is not null order by duration_ms desc limit %s"
            ).format(where),
            [*values, SLOWEST_TRACES],
        )
        slowest = await cur.fetchall()
    assert total_row is not None
    total = int(total_row[0])
    return {
        "total_events": total,
        "avg_latency_ms": _ms(total_row[1]),
        "p95_latency_ms": _ms(total_row[2]),
        "error_rate": round(int(total_row[3]) / total, 4) if total else 0,
        "by_source": [
            {
                "source": r[0],
                "count": r[1],
                "avg_duration_ms": _ms(r[2]),
                "p95_duration_ms": _ms(r[3]),
                "error_count": r[4],
            }
            for r in by_source
        ],
        "by_action": [
            {
                "source": r[0],
                "entity": r[1],
                "action": r[2],
                "count": r[3],
                "avg_duration_ms": _ms(r[4]),
                "p95_duration_ms": _ms(r[5]),
                "error_count": r[6],
            }
            for r in by_action
        ],
        "slowest_traces": [
            {
                "trace_id": r[0],
                "action": r[1],
                "path": r[2],
                "duration_ms": _ms(r[3]),
                "created_at": r[4],
            }
            for r in slowest
        ],
    }
