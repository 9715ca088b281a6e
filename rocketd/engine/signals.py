"""Post-commit signals: wake a background actor once a write transaction commits.

A signal is a NOTIFY on the app database, delivered to every rocketd instance listening on it.
Each instance's AppDirectory passes it to the handler registered for that name (e.g. the
WebhookDispatcher), which then claims the pending rows (`FOR UPDATE SKIP LOCKED`), so exactly
one instance works on each row. A lost signal only delays work until the next scheduler sweep; it
never loses any.

Two ways to send one:

- Data-API writes (`commit_batch.write_transaction`) ask for it with
  `commit_batch.signal_after_commit`; after the COMMIT, `SignalSender` sends it from its own
  short transaction, coalescing every signal asked for meanwhile into one NOTIFY. A NOTIFY inside
  the write would make PostgreSQL serialise that write's commit (including its WAL flush) with
  every other notifying commit of the database: with 16 writers that halved write throughput.
  The sender's transaction commits with `synchronous_commit = off` (a notification needs no
  durable commit record: if it is lost, the sweep finds the rows), so it holds the notify lock
  only briefly.
- Anywhere else (workflow steps, admin changes): `send_signal(conn, name)`, or
  `RETURNING_SIGNAL` appended to the INSERT of the row the signal is about, inside the
  transaction: PostgreSQL delivers it only if that transaction commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from rocketd.db.notify import Signal, notify_params
from rocketd.logging import get_logger

log = get_logger("rocketd.engine.signals")


async def send_signal(conn: AsyncConnection[Any], name: str) -> None:
    await conn.execute("select pg_notify(%s, %s)", signal_params(name))


# Appended to an INSERT of one row, this sends the signal in that same statement (one round trip
# less than `send_signal`); its parameters come after the INSERT's (`signal_params`). PostgreSQL
# delivers identical notifications of one transaction once, so several such rows wake once.
RETURNING_SIGNAL = " returning pg_notify(%s, %s)"


def signal_params(name: str) -> tuple[str, str]:
    return notify_params(Signal(name))


COALESCE_SECONDS: Final = 0.002  # how long a signal waits for others to share its NOTIFY
_SEND: Final = "select set_config('synchronous_commit', 'off', true), pg_notify(%s, %s)"


class SignalSender:
    """Sends signals for one app database after commit, coalesced: while one NOTIFY is being
    sent (or for `COALESCE_SECONDS` before it), every further request joins the next one.
    Identical names are sent once."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def signal(self, names: Iterable[str]) -> None:
        """Ask for `names` to be sent soon (never blocks; call after the commit)."""
        self._pending.update(names)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._send(), name="signals")

    async def _send(self) -> None:
        while self._pending:
            await asyncio.sleep(COALESCE_SECONDS)
            names = sorted(self._pending)
            self._pending.clear()
            try:
                async with self._pool.connection() as conn:
                    for name in names:
                        await conn.execute(_SEND, signal_params(name))
            except psycopg.Error as exc:  # pool timeouts and a closed pool included
                # The rows are committed; the next sweep picks them up.
                log.warning(
                    "could not send a signal; the sweep will find the work",
                    signals=names,
                    error=str(exc),
                )

    async def flush(self) -> None:
        """Wait until every signal asked for so far is sent (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
