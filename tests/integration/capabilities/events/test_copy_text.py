"""The flusher's own COPY encoding (copy_text.py) through a real `COPY _events FROM STDIN`:
whatever the values hold, they are read back as they were recorded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from rocketd.capabilities.events.flusher import write_rows
from rocketd.capabilities.events.schema import EVENTS_PLAN
from rocketd.db.migrations import apply_plan
from rocketd.tracing import BUSINESS, SYSTEM, EventRow
from tests.support.databases import scratch_database

HOSTILE = [
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    "\\\\N",
    "\\.",
    "ends with \\",
    "quotes ' and \" and `",
    "unicode é 日本 🚀",
    "\\t literally",
    "not printable to Python: \u00a0 \u200d \x1f",
    "",
]


@pytest.fixture(scope="module")
def database(pg_dsn: str) -> Iterator[str]:
    with scratch_database(pg_dsn, "rkt_copy", lambda conn: None) as dsn:
        yield dsn


@pytest.fixture
async def conn(database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as c:
        await apply_plan(c, EVENTS_PLAN)
        await c.execute("truncate _events")
        yield c


def row(
    event_type: str = SYSTEM,
    *,
    source: str = "engine",
    component: str = "handler",
    action: str = "record.get",
    entity: str | None = "order",
    record_id: str | None = None,
    user_id: str | None = None,
    duration_us: int | None = 1234,
    status: str | None = "ok",
    metadata: dict[str, Any] | None = None,
) -> EventRow:
    return (
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        event_type,
        source,
        component,
        action,
        entity,
        record_id,
        user_id,
        duration_us,
        status,
        metadata if metadata is not None else {},
        0,
    )


async def stored(conn: psycopg.AsyncConnection[Any]) -> dict[str, tuple[Any, ...]]:
    """Every stored row by span id, as (the columns of an EventRow but the duration in ms)."""
    cur = await conn.execute(
        "select trace_id::text, span_id::text, parent_span_id::text, event_type, source,"
        " component, action, entity, record_id, user_id::text, duration_ms, status, metadata"
        " from _events"
    )
    return {r[1]: r for r in await cur.fetchall()}


def expected(recorded: EventRow) -> tuple[Any, ...]:
    duration = recorded[10]
    return (*recorded[:10], None if duration is None else duration / 1000, *recorded[11:13])


# with a tab, newline or carriage return the whole batch is escaped; with backslashes alone,
# only the rows that hold one
BACKSLASHES_ONLY = [v for v in HOSTILE if not any(c in v for c in "\t\n\r")]


@pytest.mark.parametrize("values", [HOSTILE, BACKSLASHES_ONLY], ids=["all", "backslashes"])
async def test_hostile_values_are_read_back_as_recorded(
    conn: psycopg.AsyncConnection[Any], values: list[str]
) -> None:
    rows = [row(record_id=value, entity=value, metadata={"v": value}) for value in values]
    rows += [
        row(
            BUSINESS,
            source=BUSINESS,
            component=value,
            action=value,
            entity=value,
            record_id=value,
            duration_us=None,
            status=None,
            user_id=str(uuid.uuid4()),
            metadata={value: [value, {"nested": value}], "n": 1.5, "ok": True, "none": None},
        )
        for value in values
    ]
    rows.append(row(entity=None, metadata={"sql": 'SELECT "id" FROM "t" WHERE "id" = ?'}))
    rows.append(row(duration_us=0, status="error", metadata={"error": "NOT_FOUND: x\\y"}))
    await write_rows(conn, rows)
    found = await stored(conn)
    assert len(found) == len(rows)
    for recorded in rows:
        assert found[recorded[1]] == expected(recorded)


async def test_plain_rows_take_the_fast_path_and_read_back_equal(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    rows = [
        row(record_id=str(n), duration_us=n * 997, metadata={"rows": n, "sql": "select ?"})
        for n in range(200)
    ]
    await write_rows(conn, rows)
    found = await stored(conn)
    assert [found[r[1]] for r in rows] == [expected(r) for r in rows]
    cur = await conn.execute("select duration_ms from _events where record_id = '3'")
    assert await cur.fetchone() == (2.991,)


async def test_characters_postgresql_refuses_do_not_lose_the_batch(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    nul = row(record_id="a\x00b", metadata={"k\x00": "v\x00", "list": ["\x00"]})
    nul_in_metadata = row(metadata={"v": "x\x00y", "sql": 'select "a"'})
    surrogate = row(BUSINESS, action="x\ud800y", metadata={"s": "\udfff"}, status=None)
    plain = row(record_id="plain")
    not_text_keys = row(metadata={1: "one", "two": 2})  # type: ignore[dict-item]
    await write_rows(conn, [nul, nul_in_metadata, surrogate, plain, not_text_keys])
    found = await stored(conn)
    assert found[nul[1]][8] == "a\ufffdb"
    assert found[nul[1]][12] == {"k\ufffd": "v\ufffd", "list": ["\ufffd"]}
    assert found[nul_in_metadata[1]][12] == {"v": "x\ufffdy", "sql": 'select "a"'}
    assert found[surrogate[1]][6] == "x?y" and found[surrogate[1]][12] == {"s": "?"}
    assert found[plain[1]] == expected(plain)
    assert found[not_text_keys[1]][12] == {"1": "one", "two": 2}
