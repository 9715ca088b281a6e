"""LeasingPool on a real PostgreSQL: hand-off under contention, timeouts, cancellation, dirty
and broken connections, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout

from rocketd.db.pool import SPARE_IDLE_S, LeasingPool
from tests.support.helpers import wait_until


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[LeasingPool]:
    p = LeasingPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False)
    await p.open(wait=True, timeout=15)
    try:
        yield p
    finally:
        await p.close()


async def _backend(pool: LeasingPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("select pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_many_tasks_share_two_connections(pool: LeasingPool) -> None:
    in_use = 0
    most = 0

    async def work(n: int) -> int:
        nonlocal in_use, most
        async with pool.connection() as conn:
            in_use += 1
            most = max(most, in_use)
            cur = await conn.execute("select %s::int * 2, pg_sleep(0.001)", (n,))
            row = await cur.fetchone()
            in_use -= 1
            assert row is not None
            return int(row[0])

    results = await asyncio.gather(*(work(n) for n in range(40)))
    assert results == [2 * n for n in range(40)]
    assert most == 2
    assert pool._held <= 2


async def test_waiting_past_the_timeout_is_pool_timeout(pool: LeasingPool) -> None:
    async with pool.connection(), pool.connection():
        with pytest.raises(PoolTimeout):
            async with pool.connection(timeout=0.2):
                pass
    assert await _backend(pool) > 0  # both came back


async def test_a_waiter_cancelled_leaks_nothing(pool: LeasingPool) -> None:
    async with pool.connection(), pool.connection():
        waiter = asyncio.create_task(_backend(pool))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    pids = await asyncio.gather(*(_backend(pool) for _ in range(6)))
    assert len(set(pids)) <= 2
    assert pool._held <= 2


async def test_a_transaction_left_open_is_committed_or_rolled_back_like_psycopg_pool(
    pool: LeasingPool,
) -> None:
    async with pool.connection() as conn:
        await conn.execute("create temporary table if not exists t (n int)")
    with pytest.raises(RuntimeError):
        async with pool.connection() as conn:
            await conn.execute("begin")
            await conn.execute("select 1")
            raise RuntimeError("the block fails")
    for _ in range(4):  # every connection handed out afterwards is clean
        async with pool.connection() as conn:
            assert conn.info.transaction_status == TransactionStatus.IDLE


async def test_a_broken_connection_is_replaced(pool: LeasingPool, pg_dsn: str) -> None:
    victim = await _backend(pool)
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute("select pg_terminate_backend(%s)", (victim,))
    broke = 0
    for _ in range(4):
        try:
            await _backend(pool)
        except psycopg.OperationalError:
            broke += 1  # the request that meets the dead connection fails, as with psycopg_pool
    assert broke <= 1
    assert victim not in {await _backend(pool) for _ in range(4)}


async def test_close_hands_the_spares_back(pg_dsn: str) -> None:
    p = LeasingPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False)
    await p.open(wait=True, timeout=15)
    await asyncio.gather(_backend(p), _backend(p))
    assert p._spares
    await p.close()
    assert not p._spares and p._held == 0
    assert p.closed


async def test_spares_go_back_into_the_pool_when_nobody_asks(pool: LeasingPool) -> None:
    await _backend(pool)
    assert pool._spares, "a connection given back with nobody waiting is kept as a spare"
    await wait_until(lambda: not pool._spares and pool._held == 0, "spares returned", timeout=10)
    # Returned through psycopg_pool, so its idle handling (max_idle, min_size) applies again.
    assert pool.get_stats()["pool_available"] >= 1
    await _backend(pool)  # and the pool still serves


async def test_spares_stay_while_requests_keep_coming(pool: LeasingPool) -> None:
    for _ in range(int(SPARE_IDLE_S / 0.1) + 5):
        await _backend(pool)
        await asyncio.sleep(0.1)  # paces the requests: the behaviour under test is the pace
    assert pool._spares, "a steady trickle of requests keeps its spare"
