"""`db.declared_indexes.reconcile` on a real database: builds, what a crashed build leaves
behind, another instance holding an index's lock, drops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from rocketd.db.app_schema import APP_PLAN
from rocketd.db.declared_indexes import declared_indexes, has_work, reconcile, record_wanted
from rocketd.db.migrations import apply_plan
from rocketd.metadata.parse import parse_entity
from tests.support.databases import scratch_database
from tests.support.helpers import wait_until

ENTITY = parse_entity(
    {
        "name": "item",
        "table": "items",
        "primary_key": {"field": "id", "type": "int"},
        "fields": [{"name": "id", "type": "int"}, {"name": "category", "type": "string"}],
        "indexes": [{"fields": ["category"]}],
    }
)
INDEX = declared_indexes(ENTITY)[0]


def _setup(conn: psycopg.Connection[Any]) -> None:
    conn.execute("create table items (id int primary key, category text)")
    conn.execute("insert into items select g, 'c' || (g % 3) from generate_series(1, 300) g")


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    with scratch_database(pg_dsn, "rkt_idx", _setup) as dsn:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            await apply_plan(connection, APP_PLAN)
            yield connection


async def _index(conn: psycopg.AsyncConnection[Any]) -> tuple[bool, bool] | None:
    """(valid, unique) of the declared index, None when it does not exist."""
    cur = await conn.execute(
        "select ix.indisvalid, ix.indisunique from pg_index ix join pg_class i"
        " on i.oid = ix.indexrelid where i.relname = %s",
        (INDEX.name,),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1])


async def _state(conn: psycopg.AsyncConnection[Any]) -> str | None:
    cur = await conn.execute("select state from _index_builds where name = %s", (INDEX.name,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def test_reconcile_builds_then_has_nothing_to_do(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    assert await reconcile(conn, [ENTITY]) is True
    assert await _index(conn) == (True, False)
    assert await _state(conn) == "ready"
    assert await reconcile(conn, [ENTITY]) is False


async def test_invalid_index_of_a_crashed_build_is_rebuilt(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    async with conn.transaction():
        await record_wanted(conn, ENTITY)
    # What a build cut short leaves: an invalid index under the declared name (made here by a
    # concurrent unique build that fails on the duplicate categories).
    with pytest.raises(psycopg.errors.UniqueViolation):
        await conn.execute(f"create unique index concurrently {INDEX.name} on items (category)")
    assert await _index(conn) == (False, True)
    assert await _state(conn) == "building"
    assert await reconcile(conn, [ENTITY]) is True
    assert await _index(conn) == (True, False)
    assert await _state(conn) == "ready"


async def test_an_index_locked_by_another_builder_is_left_to_it(
    conn: psycopg.AsyncConnection[Any], pg_dsn: str
) -> None:
    info = conn.info
    other_dsn = f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"
    async with await psycopg.AsyncConnection.connect(other_dsn, autocommit=True) as other:
        await other.execute(
            "select pg_advisory_lock(hashtextextended(%s, 0))", ("rocketd:index:" + INDEX.name,)
        )
        assert await reconcile(conn, [ENTITY]) is False
        assert await _index(conn) is None
        assert await _state(conn) == "building"
        other_pid = other.info.backend_pid
    # The other builder's session ended (a crash looks the same). Its backend releases the lock
    # when it exits, a moment after the client closes the socket: wait for that, then the next
    # reconcile builds.
    await _wait_backend_gone(conn, other_pid)
    assert await reconcile(conn, [ENTITY]) is True
    assert await _state(conn) == "ready"


async def _wait_backend_gone(conn: psycopg.AsyncConnection[Any], pid: int) -> None:
    async def gone() -> bool:
        cur = await conn.execute(
            "select 1 from pg_stat_activity where pid = %s"
            " union all select 1 from pg_locks where pid = %s",
            (pid, pid),
        )
        return await cur.fetchone() is None

    await wait_until(gone, f"backend {pid} to exit after its client closed", interval=0.05)


async def test_index_no_longer_declared_is_dropped(conn: psycopg.AsyncConnection[Any]) -> None:
    await reconcile(conn, [ENTITY])
    assert await reconcile(conn, []) is True
    assert await _index(conn) is None
    assert await _state(conn) is None


async def test_has_work_until_reconciled(conn: psycopg.AsyncConnection[Any]) -> None:
    assert await has_work(conn) is False
    async with conn.transaction():
        await record_wanted(conn, ENTITY)
    assert await has_work(conn) is True
    await reconcile(conn, [ENTITY])
    assert await has_work(conn) is False
    await conn.execute(f"drop index {INDEX.name}")  # dropped by hand: ready but gone
    assert await has_work(conn) is True
    assert await reconcile(conn, [ENTITY]) is True
    assert await _index(conn) == (True, False)
