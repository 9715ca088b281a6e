"""Sustained `_events` rows per second the EventFlusher writes, and what recording costs a
request: the flusher's real COPY path (one transaction per batch, `synchronous_commit = off`)
into a scratch database, and the in-process cost of building and closing one traced request of
12 spans (a typical create: request, auth, permissions, record, SQL statements).

Needs a PostgreSQL server (`--pg-url`, default postgresql://postgres@127.0.0.1:5432/postgres);
the database it creates is dropped afterwards:

    .venv/bin/python bench/events_bench.py [--rows 200000] [--batch 500]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.events.flusher import EventFlusher
from rocketd.capabilities.events.schema import EVENTS_PLAN
from rocketd.db.migrations import apply_plan
from rocketd.tracing import EventRow, Trace, start_root, start_span

SPANS_PER_REQUEST = 12


def one_request(sink: list[list[EventRow]]) -> None:
    """A traced request as the kernel records it: a root, then 11 nested spans."""
    trace = Trace(str(uuid.uuid4()), sink.append)
    with start_root(trace, "http", "handler", "request", metadata={"method": "POST"}):
        with start_span("auth", "middleware", "auth.validate"):
            pass
        with start_span("engine", "handler", "record.create", entity="order"):
            for _ in range(3):
                with start_span("auth", "permissions", "permission.check"):
                    pass
            with start_span("engine", "writer", "nested_write.execute", entity="order"):
                for statement in ("BEGIN", "INSERT INTO orders VALUES (?)", "COMMIT"):
                    with start_span("db", "postgres", "query.execute", metadata={"sql": statement}):
                        pass
                with start_span("engine", "rules", "rules.evaluate"):
                    pass
        trace.set_user(str(uuid.uuid4()))
    trace.close()


def record_cost(requests: int) -> float:
    """Microseconds to build and close one traced request (spans, rows, hand-over)."""
    sink: list[list[EventRow]] = []
    started = time.perf_counter()
    for _ in range(requests):
        one_request(sink)
        if len(sink) > 1000:
            sink.clear()
    return (time.perf_counter() - started) / requests * 1e6


async def flush_rate(dsn: str, rows: int, batch: int) -> tuple[float, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await apply_plan(conn, EVENTS_PLAN)
        await conn.commit()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    flusher = EventFlusher(capacity=rows + 1, batch_size=batch, interval=3600)
    sink: list[list[EventRow]] = []
    while sum(len(b) for b in sink) < rows:
        one_request(sink)
    produced = [row for b in sink for row in b][:rows]
    started = time.perf_counter()
    for offset in range(0, len(produced), batch):
        flusher.buffer.add("bench", pool, produced[offset : offset + batch])
        await flusher.flush()
    elapsed = time.perf_counter() - started
    await pool.close()
    return flusher.written / elapsed, flusher.failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    name = f"rocketbench_events_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(args.pg_url, dbname=name)
    try:
        per_request = record_cost(20_000)
        rate, failed = asyncio.run(flush_rate(dsn, args.rows, args.batch))
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
    print("| measure | value |")
    print("| --- | --- |")
    print(
        f"| recording one traced request ({SPANS_PER_REQUEST} spans), in process | "
        f"{per_request:.1f} µs |"
    )
    print(f"| flusher, sustained rows/s (COPY, batches of {args.batch}) | {rate:,.0f} |")
    print(f"| rows lost to failed flushes | {failed} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
