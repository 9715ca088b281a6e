"""The EventFlusher: one global, supervised actor writing the buffer to each app's `_events`.

It wakes every `flush_interval_ms`, or as soon as an app's queue holds `buffer_size` rows, and
writes each app's rows with `COPY` in a transaction under `synchronous_commit = off` (an event
lost in a server crash is acceptable; a request waiting on its fsync is not). Apps are flushed
concurrently, each on its own: a failing app database loses that batch (logged, counted) and
the others go on. Stopping flushes whatever is left (SIGTERM loses nothing buffered).

Each app's rows go through a connection of the flusher's own, opened with the app pool's
settings when the app first has rows and closed after `idle_seconds` without any (and at once
when a write on it fails): never one of the app pool's connections, which are the requests'
(a COPY holding one of them would make requests wait for it; the spec: event writing never
blocks a request). The connection budget counts it (platform/capacity.py).
"""

from __future__ import annotations

import asyncio
import time
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
    def __init__(
        self, capacity: int, batch_size: int, interval: float, idle_seconds: float = 300.0
    ) -> None:
        super().__init__("event-flusher")
        self._wakeup = asyncio.Event()
        self.buffer = EventBuffer(capacity, batch_size, self._wakeup.set)
        self.interval = interval
        self.idle_seconds = idle_seconds
        self.written = 0
        self.failed = 0
        self.flushes = 0
        self._inflight: asyncio.Future[None] | None = None
        # app -> (the flusher's connection to its database, when it was last used)
        self.connections: dict[str, tuple[AsyncConnection[Any], float]] = {}

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
            await self._close_idle(time.monotonic() - self.idle_seconds)

    async def on_stop(self) -> None:
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.wait({inflight}, timeout=WRITE_TIMEOUT)
        await self.flush()
        await self._close_idle(float("inf"))

    async def _close_idle(self, before: float) -> None:
        """Close the connections last used before `before` (monotonic seconds)."""
        for app, (conn, used) in list(self.connections.items()):
            if used < before:
                del self.connections[app]
                await _close(conn)

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
                    await self._write(app, queue, rows)
            except asyncio.CancelledError:
                self.buffer.give_back(app, rows)  # stopping: the final flush writes them
                raise
            except Exception as exc:
                self.failed += len(rows)
                log.warning("event batch lost", app=app, rows=len(rows), error=type(exc).__name__)
                return
            self.written += len(rows)

    async def _write(self, app: str, queue: AppQueue, rows: list[EventRow]) -> None:
        known = self.connections.pop(app, None)
        if known is not None and not known[0].closed:
            try:
                await self._write_on(app, known[0], rows)
                return
            except ConnectionLost:  # gone while idle (a restart, a terminated backend)
                pass  # nothing of the batch was sent: once more on a new connection
        await self._write_on(app, await _connect(queue), rows)

    async def _write_on(self, app: str, conn: AsyncConnection[Any], rows: list[EventRow]) -> None:
        try:
            await write_rows(conn, rows)
        except BaseException:
            await _close(conn)  # a failed or cut write: the next batch starts afresh
            raise
        self.connections[app] = (conn, time.monotonic())


class ConnectionLost(Exception):
    """The connection failed before a batch's transaction began: none of it was sent."""


async def _connect(queue: AppQueue) -> AsyncConnection[Any]:
    """A connection to the app's database made like its pool's (the same conninfo and options:
    prepared statements off behind a pooler), autocommit, with psycopg's own cursor."""
    pool = queue.pool
    if not isinstance(pool.conninfo, str):
        raise RuntimeError("the app pool's conninfo is not a string")
    given = pool.kwargs if isinstance(pool.kwargs, dict) else {}  # rocketd's pools: a dict
    options = {k: v for k, v in given.items() if k != "cursor_factory"}
    options["autocommit"] = True
    return await psycopg.AsyncConnection.connect(pool.conninfo, **options)


async def _close(conn: AsyncConnection[Any]) -> None:
    try:
        await conn.close()
    except Exception:  # closing a broken connection: nothing left to do
        log.debug("closing an event connection failed", exc_info=True)


async def write_rows(conn: AsyncConnection[Any], rows: list[EventRow]) -> None:
    """One transaction, `synchronous_commit` off, one COPY of `rows`: three round trips (the
    transaction commands as bare simple queries, db/commands.py), the rows encoded in one pass
    (copy_text.py)."""
    payload = copy_payload(rows)
    try:
        await run_command(conn, b"BEGIN; SET LOCAL synchronous_commit = off")
    except psycopg.OperationalError as exc:
        raise ConnectionLost(type(exc).__name__) from exc
    try:
        async with conn.cursor().copy(COPY_SQL) as copy:
            await copy.write(payload)
        await run_command(conn, b"COMMIT")
    except BaseException:
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            try:
                await run_command(conn, b"ROLLBACK")
            except psycopg.Error:  # a broken connection: _write_on closes it
                log.warning("rollback failed after a failed event batch", exc_info=True)
        raise
