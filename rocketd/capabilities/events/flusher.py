"""The EventFlusher: one global, supervised actor writing the buffer to each app's `_events`.

It wakes every `flush_interval_ms`, or as soon as an app's queue holds `buffer_size` rows, and
writes each app's rows with `COPY` in a transaction under `synchronous_commit = off` (an event
lost in a server crash is acceptable; a request waiting on its fsync is not). Apps are flushed
concurrently, each on its own: a failing app database loses that batch (logged, counted) and
the others go on. Stopping flushes whatever is left (SIGTERM loses nothing buffered), through a
direct connection when the app's pool has already closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from rocketd.actors.base import Actor
from rocketd.capabilities.events.buffer import AppQueue, EventBuffer
from rocketd.capabilities.events.copy_text import COPY_COLUMNS, copy_payload
from rocketd.db.commands import run_command
from rocketd.logging import get_logger
from rocketd.tracing import EventRow

log = get_logger("rocketd.events")

COPY_SQL: Final = f"copy _events ({', '.join(COPY_COLUMNS)}) from stdin"
# Rows per COPY: one flush of a busy app is split so a transaction stays short.
MAX_ROWS_PER_WRITE: Final = 5000
WRITE_TIMEOUT: Final = 10.0


class EventFlusher(Actor):
    def __init__(self, capacity: int, batch_size: int, interval: float) -> None:
        super().__init__("event-flusher")
        self._wakeup = asyncio.Event()
        self.buffer = EventBuffer(capacity, batch_size, self._wakeup.set)
        self.interval = interval
        self.written = 0
        self.failed = 0
        self.flushes = 0
        self._inflight: asyncio.Future[None] | None = None

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            # shielded: a stop never cuts a COPY in half (on_stop waits for it instead)
            self._inflight = asyncio.ensure_future(self.flush())
            await asyncio.shield(self._inflight)

    async def on_stop(self) -> None:
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.wait({inflight}, timeout=WRITE_TIMEOUT)
        await self.flush()

    async def flush(self) -> None:
        """Write every app's waiting rows (apps concurrently); never raises."""
        apps = self.buffer.apps_waiting()
        if apps:
            self.flushes += 1
            await asyncio.gather(*(self._flush_app(app) for app in apps))

    async def _flush_app(self, app: str) -> None:
        while True:
            taken = self.buffer.take(app, MAX_ROWS_PER_WRITE)
            if taken is None:
                return
            queue, rows = taken
            try:
                async with asyncio.timeout(WRITE_TIMEOUT):  # no task per batch, as wait_for makes
                    await _write(queue, rows)
            except asyncio.CancelledError:
                self.buffer.give_back(app, rows)  # stopping: the final flush writes them
                raise
            except Exception as exc:
                self.failed += len(rows)
                log.warning("event batch lost", app=app, rows=len(rows), error=type(exc).__name__)
                return
            self.written += len(rows)


async def _write(queue: AppQueue, rows: list[EventRow]) -> None:
    pool = queue.pool
    if not pool.closed:
        async with pool.connection() as conn:
            await write_rows(conn, rows)
        return
    if not isinstance(pool.conninfo, str):
        raise RuntimeError("the app's pool is closed and its conninfo is not a string")
    async with await psycopg.AsyncConnection.connect(pool.conninfo, autocommit=True) as conn:
        await write_rows(conn, rows)


async def write_rows(conn: AsyncConnection[Any], rows: list[EventRow]) -> None:
    """One transaction, `synchronous_commit` off, one COPY of `rows`: three round trips (the
    transaction commands as bare simple queries, db/commands.py), the rows encoded in one pass
    (copy_text.py)."""
    payload = copy_payload(rows)
    await run_command(conn, b"BEGIN; SET LOCAL synchronous_commit = off")
    try:
        async with conn.cursor().copy(COPY_SQL) as copy:
            await copy.write(payload)
        await run_command(conn, b"COMMIT")
    except BaseException:
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            try:
                await run_command(conn, b"ROLLBACK")
            except psycopg.Error:  # a broken connection: the pool discards it
                log.warning("rollback failed after a failed event batch", exc_info=True)
        raise
