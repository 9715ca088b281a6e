"""An app's connection pool: psycopg_pool's, with a cheap hand-off between requests.

Under load an app has more requests in flight than connections (32 against 5 in the benchmark),
so most requests wait for a connection. psycopg_pool's wait (a lock, a condition, `wait_for`
with a task per wait) and its bookkeeping on every return cost rocketd 30-40 µs of CPU per
request on the benchmark machine (docs/benchmarks.md, issue 18), as much as the rest of a
request's database work. `LeasingPool.connection()` keeps what psycopg_pool does well (opening,
growing, resetting, checking and replacing connections) and adds a thin layer in front:

- a connection a request gives back is handed straight to the oldest waiting request (a
  future resolved, no lock, no task), or kept as a spare for the next one;
- a connection goes back into psycopg_pool (`putconn`) when it is not clean (broken, closed,
  left in a transaction), when the pool is closing, and at least every `RECYCLE_S` seconds,
  so max_lifetime, resets and replacement still apply;
- spares go back into psycopg_pool once no request has asked for a connection for
  `SPARE_IDLE_S` seconds, so an idle app's pool still shrinks (`max_idle`, min_size 0) and a
  quiet app holds no connection outside psycopg_pool's checks;
- the end of a block behaves as with psycopg_pool (a transaction the block left open is
  committed, or rolled back after an error);
- waiting is FIFO and bounded by the same timeout as `getconn` (`PoolTimeout`), and a waiter
  cancelled while a connection was being handed to it passes the connection on.

Every `pool.connection()` user goes through this layer (nothing in rocketd calls `getconn`
directly), so spares held here never starve anyone. psycopg_pool's own statistics count only
the connections that pass through it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import monotonic
from types import TracebackType
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

# Longest a connection stays in the hand-off layer before it passes through psycopg_pool again.
RECYCLE_S: Final = 60.0
# How long spares wait without any request asking for a connection before they go back.
SPARE_IDLE_S: Final = 1.0

Conn = AsyncConnection[Any]


class LeasingPool(AsyncConnectionPool[Conn]):
    """`AsyncConnectionPool` whose `connection()` hands connections from request to request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._spares: list[Conn] = []
        self._waiters: deque[asyncio.Future[Conn | None]] = deque()
        self._held = 0  # connections taken from psycopg_pool: spares and those in use
        self._taken_at: dict[Conn, float] = {}
        self._last_ask = 0.0  # monotonic time of the last _acquire
        self._trimmer: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[None]] = set()

    def connection(self, timeout: float | None = None) -> _Lease:  # type: ignore[override]
        return _Lease(self, timeout)

    async def _acquire(self, timeout: float | None) -> Conn:
        now = self._last_ask = monotonic()
        deadline = now + (self.timeout if timeout is None else timeout)
        while True:
            if self._spares:
                return self._spares.pop()
            if self._held < self.max_size and not self._waiters:
                return await self._take(deadline)
            conn = await self._wait(deadline)
            if conn is not None:
                return conn
            # A connection went back into psycopg_pool instead of to us: there is room now.
            if self._held < self.max_size:
                return await self._take(deadline)

    async def _take(self, deadline: float) -> Conn:
        self._held += 1
        try:
            conn = await self.getconn(max(deadline - monotonic(), 0.001))
        except BaseException:
            self._held -= 1
            self._pass_on(None)
            raise
        self._taken_at[conn] = monotonic()
        return conn

    async def _wait(self, deadline: float) -> Conn | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Conn | None] = loop.create_future()
        self._waiters.append(future)
        timer = loop.call_at(
            loop.time() + max(deadline - monotonic(), 0.0), _expire, future, self.timeout
        )
        try:
            return await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                got = future.result()  # handed to us as we were cancelled: pass it on
                if got is None:
                    self._pass_on(None)
                else:
                    self._give_back(got)
            raise
        finally:
            timer.cancel()

    def _pass_on(self, conn: Conn | None) -> bool:
        """Resolve the oldest live waiter with `conn` (None: "try psycopg_pool"); False when
        nobody waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _give_back(self, conn: Conn) -> None:
        if not self._pass_on(conn):
            self._spares.append(conn)
            if self._trimmer is None:
                self._trimmer = asyncio.get_running_loop().call_later(SPARE_IDLE_S, self._trim)

    def _trim(self) -> None:
        """Spares back into psycopg_pool once nobody asked for a connection for SPARE_IDLE_S."""
        self._trimmer = None
        if not self._spares:
            return
        quiet = monotonic() - self._last_ask
        if quiet < SPARE_IDLE_S:
            self._trimmer = asyncio.get_running_loop().call_later(SPARE_IDLE_S - quiet, self._trim)
            return
        spares, self._spares = self._spares, []
        for conn in spares:
            self._taken_at.pop(conn, None)
            self._held -= 1
            task = asyncio.get_running_loop().create_task(self.putconn(conn))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

    async def _release(self, conn: Conn) -> None:
        taken = self._taken_at.get(conn, 0.0)
        if (
            not self.closed
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
            and monotonic() - taken < RECYCLE_S
        ):
            self._give_back(conn)
            return
        self._taken_at.pop(conn, None)
        self._held -= 1
        try:
            await self.putconn(conn)
        finally:
            self._pass_on(None)

    async def close(self, timeout: float = 5.0) -> None:
        if self._trimmer is not None:
            self._trimmer.cancel()
            self._trimmer = None
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)
        spares, self._spares = self._spares, []
        for conn in spares:
            self._taken_at.pop(conn, None)
            self._held -= 1
            await self.putconn(conn)
        await super().close(timeout)
        while self._pass_on(None):
            pass


def _expire(future: asyncio.Future[Conn | None], timeout: float) -> None:
    if not future.done():
        future.set_exception(PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec"))


class _Lease:
    """`async with pool.connection() as conn:`: one connection for the block."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: LeasingPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Conn | None = None

    async def __aenter__(self) -> Conn:
        self._conn = await self._pool._acquire(self._timeout)
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                # What psycopg_pool's connection() does through `async with conn`: commit what
                # the block left open, or roll it back after an error (idle: nothing to do).
                await conn.__aexit__(exc_type, exc, tb)
        finally:
            await self._pool._release(conn)
