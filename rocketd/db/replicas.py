"""Reads on streaming replicas (`database.replica_urls`), with read-your-writes for each caller.

A list or a get takes its connection from `ReplicaReads.connection(caller_id)`: a replica's
pool, in turn. A caller who wrote recently (their last commit's WAL position is remembered by
`note_write`, right after the commit) is served by a replica only once it has replayed that
position: the replica is asked (`pg_last_wal_replay_lsn()`) until it has, for at most
`database.replica_wait` seconds, and otherwise the read goes to the primary. A replica that does
not answer is skipped for the primary too. Callers who did not write read whatever the replica
has replayed (streaming replicas are usually milliseconds behind).

What is remembered lives in this process: a caller whose next read reaches another worker or
instance than their write is not waited for there (docs/deploy.md, "Read replicas"). Positions
are forgotten after `REMEMBER_SECONDS`, far beyond any healthy replication lag.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from rocketd.logging import get_logger

__all__ = ["ReplicaReads"]

log = get_logger("rocketd.db.replicas")

REMEMBER_SECONDS = 60.0
MAX_CALLERS = 100_000
POLL_SECONDS = 0.005
CAUGHT_UP = (
    "select not pg_is_in_recovery() or coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"
)


class ReplicaReads:
    def __init__(
        self,
        primary: AsyncConnectionPool[Any],
        replicas: Sequence[AsyncConnectionPool[Any]],
        wait: float,
    ) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self.wait = wait
        self._turn = itertools.cycle(range(len(self.replicas)))
        self._written: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def note_write(self, caller_id: str, conn: psycopg.AsyncConnection[Any]) -> None:
        """After `caller_id`'s commit on `conn`: remember the WAL position it reached."""
        cur = await conn.execute("select pg_current_wal_insert_lsn()::text")
        row = await cur.fetchone()
        if row is None:
            return
        self._written.pop(caller_id, None)
        self._written[caller_id] = (str(row[0]), time.monotonic())
        while len(self._written) > MAX_CALLERS:
            self._written.popitem(last=False)

    def _position_of(self, caller_id: str) -> str | None:
        found = self._written.get(caller_id)
        if found is None:
            return None
        lsn, at = found
        if time.monotonic() - at > REMEMBER_SECONDS:
            del self._written[caller_id]
            return None
        return lsn

    @asynccontextmanager
    async def connection(self, caller_id: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for a read by `caller_id`: a replica that has their writes, or the
        primary."""
        replica = self.replicas[next(self._turn)]
        conn = await self._replica_connection(replica, self._position_of(caller_id))
        if conn is None:
            async with self.primary.connection() as primary_conn:
                yield primary_conn
            return
        try:
            yield conn
        finally:
            await replica.putconn(conn)

    async def _replica_connection(
        self, replica: AsyncConnectionPool[Any], lsn: str | None
    ) -> psycopg.AsyncConnection[Any] | None:
        try:
            conn: psycopg.AsyncConnection[Any] = await replica.getconn()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.warning("replica unavailable; reading the primary", problem=type(exc).__name__)
            return None
        try:
            if lsn is None or await self._caught_up(conn, lsn):
                return conn
        except psycopg.Error as exc:
            log.warning("replica failed; reading the primary", problem=type(exc).__name__)
        await replica.putconn(conn)
        return None

    async def _caught_up(self, conn: psycopg.AsyncConnection[Any], lsn: str) -> bool:
        deadline = time.monotonic() + self.wait
        while True:
            cur = await conn.execute(CAUGHT_UP, (lsn,))
            row = await cur.fetchone()
            if row is not None and row[0]:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.close()
