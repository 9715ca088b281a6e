"""Transaction commands (BEGIN, COMMIT, ROLLBACK) as bare simple-protocol queries.

Every data-API write sends BEGIN and COMMIT. Through `conn.execute` each one costs a cursor, the
query conversion and, after `prepare_threshold` uses, a prepared-statement round of the extended
protocol (Bind/Describe/Execute/Sync); sent as one simple `Query` message straight on the
connection they cost rocketd about half the CPU (measured in docs/benchmarks.md, issue 18) and
PostgreSQL a little less too. The simple protocol also suits PgBouncer in transaction mode.

The connection's lock is taken as psycopg takes it for `commit()`, so a command never
interleaves with another operation on the same connection. psycopg still tracks the
transaction state (it reads it from libpq), so `conn.info.transaction_status` stays right.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import AsyncConnection, errors, generators, pq

_OK: Final = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


async def run_command(conn: AsyncConnection[Any], command: bytes) -> None:
    """Run one parameterless statement (`b"BEGIN"`, `b"COMMIT"`, ...) with the simple query
    protocol; a failure raises the psycopg error the statement gets through `conn.execute`."""
    if conn.closed or conn.broken:
        raise errors.OperationalError("the connection is closed")
    async with conn.lock:
        pgconn = conn.pgconn
        pgconn.send_query(command)
        results = await conn.wait(generators.execute(pgconn))
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding=conn.info.encoding)
        if result.status not in _OK:
            raise errors.InterfaceError(
                f"unexpected result {pq.ExecStatus(result.status).name} from {command.decode()!r}"
            )
