"""Write transactions whose last statements travel with their COMMIT, in one round trip.

A data-API write that has a webhook or a workflow ends with INSERTs nothing in the transaction
reads back: the outbox rows (`_webhook_logs`) and the workflow instances it starts. Sent one by
one, each costs a round trip to PostgreSQL, and on this kind of machine a round trip costs the
Python process more than the SQL costs the database. `write_transaction` collects them instead
(`execute_at_commit`) and sends `INSERT ...; INSERT ...; COMMIT` as one simple query when the
block ends, so a hooked write takes as many round trips as a plain one.

What holds:
- the statements still run inside the transaction, just before COMMIT: they commit with the
  write or not at all; a failing one aborts the rest of the batch and the transaction is rolled
  back, as if it had failed in place;
- only statements whose results nobody needs may be deferred (their results are discarded);
- the signals those rows need (`execute_at_commit(..., signal=)`, `signal_after_commit`) are
  not sent inside the transaction: a NOTIFY there makes PostgreSQL serialise the commit with
  every other notifying commit, so they go to `on_commit` (the app's `signals.SignalSender`)
  once the COMMIT succeeded;
- parameters are bound client-side by psycopg (`AsyncClientCursor`: the driver quotes each value
  as a literal for the connection's encoding), because a simple query carries no parameters;
- only the connection and task that opened the transaction defer, and only outside savepoints;
  anywhere else (`execute_at_commit` outside a `write_transaction`, in a workflow step, inside a
  nested `conn.transaction()`) the statement runs at once, so a savepoint that rolls back takes
  its statements with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.pq import TransactionStatus

from rocketd.db.commands import run_command
from rocketd.engine.signals import RETURNING_SIGNAL, signal_params
from rocketd.logging import get_logger

log = get_logger("rocketd.engine.write.transaction")


@dataclass
class _Batch:
    conn: AsyncConnection[Any]
    queries: list[LiteralString] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    signals: set[str] = field(default_factory=set)


_OPEN: ContextVar[_Batch | None] = ContextVar("rocketd_commit_batch", default=None)


def _open_batch(conn: AsyncConnection[Any]) -> _Batch | None:
    """This task's batch when `conn` is in its `write_transaction` and not in a savepoint."""
    batch = _OPEN.get()
    if batch is None or batch.conn is not conn or _in_savepoint(conn):
        return None
    return batch


async def execute_at_commit(
    conn: AsyncConnection[Any],
    query: LiteralString,
    params: Sequence[Any],
    *,
    signal: str | None = None,
) -> None:
    """Run `query` (with `%s` placeholders, no literal `%`) just before this write's COMMIT when
    `conn` is in a `write_transaction` of this task; else run it now.

    `signal` names the signal the row needs: deferred, it is asked for after the commit
    (`signal_after_commit`); run now, the INSERT sends it itself (`RETURNING_SIGNAL`, inside
    its transaction)."""
    batch = _open_batch(conn)
    if batch is None:
        if signal is not None:
            query += RETURNING_SIGNAL
            params = (*params, *signal_params(signal))
        await conn.execute(query, params)
        return
    batch.queries.append(query)
    batch.params.extend(params)
    if signal is not None:
        batch.signals.add(signal)


def signal_after_commit(conn: AsyncConnection[Any], name: str) -> bool:
    """Ask for signal `name` once this write commits (`signals.SignalSender`, outside the write's
    own transaction). False when `conn` is not in a `write_transaction` of this task (or is in a
    savepoint): the caller then sends the signal inside its transaction (`RETURNING_SIGNAL`)."""
    batch = _open_batch(conn)
    if batch is None:
        return False
    batch.signals.add(name)
    return True


def _in_savepoint(conn: AsyncConnection[Any]) -> bool:
    # psycopg counts its open `transaction()` blocks; inside a write_transaction (a manual BEGIN)
    # any open block is a savepoint, whose rollback must take its statements with it. Without
    # the counter (another psycopg), assume a savepoint: the statement then simply runs now.
    return bool(getattr(conn, "_num_transactions", 1))


class WriteTransaction:
    """BEGIN ... COMMIT on an autocommit connection; deferred statements go with the COMMIT,
    and `on_commit` gets the signals asked for (`signal_after_commit`) once it succeeded; a
    block that raises is rolled back.

    Nested `conn.transaction()` blocks inside become savepoints, as with psycopg's own
    transaction block. A class rather than an `@asynccontextmanager` generator: every write
    opens one, and the generator would cost a dozen Python calls more per write (the async
    generator itself, the event loop's first-iteration hook, its weak reference)."""

    __slots__ = ("_batch", "_conn", "_on_commit", "_token")

    def __init__(
        self, conn: AsyncConnection[Any], on_commit: Callable[[set[str]], None] | None = None
    ) -> None:
        self._conn = conn
        self._on_commit = on_commit

    async def __aenter__(self) -> None:
        if _OPEN.get() is not None:
            raise RuntimeError("write transactions do not nest")
        batch = self._batch = _Batch(self._conn)
        self._token = _OPEN.set(batch)
        try:
            await run_command(self._conn, b"BEGIN")
        except BaseException:
            _OPEN.reset(self._token)
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        _OPEN.reset(self._token)  # from here on nothing defers: the batch is being sent
        conn, batch = self._conn, self._batch
        if exc is not None:
            await self._roll_back()
            return  # the block's exception goes on
        try:
            if batch.queries:
                async with AsyncClientCursor(conn) as cur:
                    await cur.execute("; ".join([*batch.queries, "COMMIT"]), batch.params)
            else:
                await run_command(conn, b"COMMIT")
        except BaseException:
            await self._roll_back()
            raise
        if batch.signals and self._on_commit is not None:
            self._on_commit(batch.signals)

    async def _roll_back(self) -> None:
        conn = self._conn
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            try:
                await run_command(conn, b"ROLLBACK")
            except psycopg.Error:
                # A broken connection: the original error is the one to report, and the
                # pool discards a connection it gets back in a transaction.
                log.warning("rollback failed after a failed write", exc_info=True)


write_transaction = WriteTransaction
