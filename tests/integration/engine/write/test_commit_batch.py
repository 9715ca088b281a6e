"""Write transactions whose deferred statements travel with the COMMIT (`engine.commit_batch`),
on a real PostgreSQL: they commit with the write or not at all, their values arrive intact
through client-side binding, their NOTIFYs are delivered on commit only, and they never defer
where a savepoint could roll them back."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.db.notify import CHANNEL as METADATA_CHANNEL
from rocketd.engine import signals
from rocketd.engine.write.transaction import (
    execute_at_commit,
    signal_after_commit,
    write_transaction,
)
from tests.support.databases import scratch_database

DDL = """
create table items (id serial primary key, label text not null);
create table events (id serial primary key, label text, doc jsonb, at timestamptz,
                     tags text[], ref uuid, n numeric check (n is null or n >= 0));
"""
INSERT_EVENT = "insert into events (label, doc, at, tags, ref, n) values (%s, %s, %s, %s, %s, %s)"


@pytest.fixture(scope="module")
def database(pg_dsn: str) -> Iterator[str]:
    with scratch_database(pg_dsn, "rkt_cb", lambda conn: conn.execute(DDL)) as dsn:
        yield dsn


@pytest.fixture
async def conn(database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as c:
        await c.execute("truncate items, events")
        yield c


async def _count(conn: Any, table: str) -> int:
    cur = await conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table)))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _event(label: str, n: int | None = 1) -> tuple[Any, ...]:
    return (label, Jsonb({"k": label}), datetime.now(UTC), [label], uuid.uuid4(), n)


async def test_deferred_statements_commit_with_the_write(conn: Any) -> None:
    async with write_transaction(conn):
        await conn.execute("insert into items (label) values ('a')")
        await execute_at_commit(conn, INSERT_EVENT, _event("one"))
        await execute_at_commit(conn, INSERT_EVENT, _event("two"))
        assert await _count(conn, "events") == 0  # not sent yet: they go with the COMMIT
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert (await _count(conn, "items"), await _count(conn, "events")) == (1, 2)


async def test_a_failing_deferred_statement_rolls_back_the_whole_write(conn: Any) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        async with write_transaction(conn):
            await conn.execute("insert into items (label) values ('a')")
            await execute_at_commit(conn, INSERT_EVENT, _event("fine"))
            await execute_at_commit(conn, INSERT_EVENT, _event("negative", n=-1))
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert (await _count(conn, "items"), await _count(conn, "events")) == (0, 0)


async def test_an_error_in_the_block_sends_nothing_deferred(conn: Any) -> None:
    with pytest.raises(RuntimeError):
        async with write_transaction(conn):
            await conn.execute("insert into items (label) values ('a')")
            await execute_at_commit(conn, INSERT_EVENT, _event("never"))
            raise RuntimeError("refused")
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert (await _count(conn, "items"), await _count(conn, "events")) == (0, 0)


async def test_awkward_values_arrive_exactly(conn: Any) -> None:
    label = 'it\'s a "quote" \\ back\\slash ; commit; -- é 😀 %s'
    doc = {"q": "'; drop table items; --", "n": [1, 2.5, None], "u": "\u2028"}
    at = datetime(2026, 2, 22, 10, 15, 30, 123456, tzinfo=UTC)
    ref = uuid.uuid4()
    async with write_transaction(conn):
        await execute_at_commit(
            conn, INSERT_EVENT, (label, Jsonb(doc), at, [label, "b,c", "{}"], ref, None)
        )
    cur = await conn.execute("select label, doc, at, tags, ref, n from events")
    assert await cur.fetchall() == [(label, doc, at, [label, "b,c", "{}"], ref, None)]
    assert await _count(conn, "items") == 0  # the hostile text stayed a value


async def test_notifications_of_deferred_statements_arrive_on_commit_only(
    conn: Any, database: str
) -> None:
    channel = f"cb_{secrets.token_hex(4)}"
    query = "insert into items (label) values (%s) returning pg_notify(%s, %s)"
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as listener:
        await listener.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
        with pytest.raises(RuntimeError):
            async with write_transaction(conn):
                await execute_at_commit(conn, query, ("x", channel, "rolled back"))
                raise RuntimeError("refused")
        async with write_transaction(conn):
            await execute_at_commit(conn, query, ("y", channel, "committed"))
        received = [n.payload async for n in listener.notifies(timeout=2.0, stop_after=1)]
    assert received == ["committed"]


async def test_outside_a_write_transaction_it_runs_at_once(conn: Any, database: str) -> None:
    await execute_at_commit(conn, INSERT_EVENT, _event("now"))
    assert await _count(conn, "events") == 1
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as other:
        async with write_transaction(conn):
            async with other.transaction():
                await execute_at_commit(other, INSERT_EVENT, _event("other connection"))
                assert await _count(other, "events") == 2  # ran on its own connection now


async def test_inside_a_savepoint_it_runs_at_once_and_rolls_back_with_it(conn: Any) -> None:
    async with write_transaction(conn):
        with pytest.raises(RuntimeError):
            async with conn.transaction():  # a savepoint
                await execute_at_commit(conn, INSERT_EVENT, _event("in savepoint"))
                assert await _count(conn, "events") == 1
                raise RuntimeError("roll the savepoint back")
        await execute_at_commit(conn, INSERT_EVENT, _event("after"))
    cur = await conn.execute("select label from events")
    assert await cur.fetchall() == [("after",)]


async def test_write_transactions_do_not_nest(conn: Any) -> None:
    async with write_transaction(conn):
        with pytest.raises(RuntimeError, match="do not nest"):
            async with write_transaction(conn):
                pass


async def test_signals_go_to_on_commit_after_a_successful_commit_only(conn: Any) -> None:
    seen: list[set[str]] = []
    with pytest.raises(RuntimeError):
        async with write_transaction(conn, seen.append):
            assert signal_after_commit(conn, "webhooks")
            raise RuntimeError("refused")
    async with write_transaction(conn, seen.append):
        assert signal_after_commit(conn, "webhooks")
        assert signal_after_commit(conn, "workflows")
        assert signal_after_commit(conn, "webhooks")
        async with conn.transaction():  # a savepoint: the caller must signal in place
            assert not signal_after_commit(conn, "webhooks")
    assert seen == [{"webhooks", "workflows"}]
    assert not signal_after_commit(conn, "webhooks")  # no write transaction open


async def test_the_signal_sender_coalesces_into_few_notifications(database: str) -> None:
    pool = AsyncConnectionPool(
        database, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    try:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as listener:
            await listener.execute(sql.SQL("listen {}").format(sql.Identifier(METADATA_CHANNEL)))
            sender = signals.SignalSender(pool)
            for _ in range(50):
                sender.signal({"webhooks"})
            sender.signal({"workflows"})
            await sender.flush()
            payloads = [n.payload async for n in listener.notifies(timeout=0.5) if n.channel]
    finally:
        await pool.close()
    assert sorted(set(payloads)) == ["signal:webhooks", "signal:workflows"]
    assert len(payloads) <= 4  # 51 requests, sent in one or two rounds


async def test_a_signal_named_with_the_statement_follows_where_the_statement_runs(
    conn: Any, database: str
) -> None:
    query = "insert into items (label) values (%s)"
    seen: list[set[str]] = []
    async with write_transaction(conn, seen.append):
        await execute_at_commit(conn, query, ("deferred",), signal="webhooks")
    assert seen == [{"webhooks"}]  # asked for after the commit, not sent by the INSERT
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as listener:
        await listener.execute(sql.SQL("listen {}").format(sql.Identifier(METADATA_CHANNEL)))
        await execute_at_commit(conn, query, ("now",), signal="webhooks")  # no write open
        received = [n.payload async for n in listener.notifies(timeout=2.0, stop_after=1)]
    assert received == ["signal:webhooks"]  # the INSERT sent it itself
    assert await _count(conn, "items") == 2
