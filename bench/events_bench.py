"""What tracing costs per request, in process, and what the EventFlusher sustains: the Python of
recording one traced `get`-like request (5 spans) and `create`-like request (12 spans) as the
kernel records them, the Python of writing those rows (the flusher's real path: taking them from
the buffer, encoding them into its `COPY`, one transaction per batch under
`synchronous_commit = off`), and the CPU the PostgreSQL backend spends per row, into a scratch
database.

Needs a PostgreSQL server on this machine (`--pg-url`, default
postgresql://postgres@127.0.0.1:5432/postgres), and to run as root or the PostgreSQL user (the
backend's CPU is read from `/proc/<pid>/stat`); the database it creates is dropped afterwards:

    .venv/bin/python -m bench.events_bench [--requests 20000] [--batch 500]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import psycopg
import uvloop
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from bench.processes import exit_on_sigterm
from rocketd import tracing
from rocketd.capabilities.events import flusher as flusher_module
from rocketd.capabilities.events.flusher import EventFlusher
from rocketd.capabilities.events.schema import EVENTS_PLAN
from rocketd.capabilities.events.tracer import AppTracer
from rocketd.db.migrations import apply_plan
from rocketd.tracing import AnySpan, Span, Trace, start_root, start_span

ENTITY = "order"
CHECK = ("auth", "permissions", "permission.check")
QUERY = ("db", "postgres", "query.execute")
INSERT_SQL = (
    'INSERT INTO "orders" ("number", "status", "total", "created_at") VALUES (?, ?, ?, now()) '
    'RETURNING "id", "number", "status", "total", "created_at"'
)
SELECT_SQL = (
    'SELECT "id", "number", "status", "total", "created_at" FROM "orders" WHERE "id" = ? LIMIT ?'
)
# the write-pipeline stages a create passes before its INSERT (observe.py's spans)
STAGES = (
    ("auth", "permissions", "permission.stage", "permissions.grant"),
    ("auth", "permissions", "permission.stage", "permissions.conditions"),
    ("engine", "rules", "rules.evaluate", "rules.before_write"),
    ("engine", "state_machine", "state.transition", "state_machines.transition"),
)


RECORD_ID = "0b8f3c52-5a1e-4d7e-9c11-6d2f0e8a4b73"


def _root_metadata(method: str) -> dict[str, Any]:
    return {"method": method, "path": f"/api/benchdata/{ENTITY}/{RECORD_ID}"}


def _leaf(
    parent: AnySpan, names: tuple[str, str, str], metadata: dict[str, Any], **more: Any
) -> None:
    """A span with nothing under it, as the code measured records one: `record_span` (a row,
    no `Span`), or, in a version without it (to compare with an older commit), a `Span`."""
    record_span = getattr(tracing, "record_span", None)
    started = time.perf_counter_ns()
    if record_span is None:
        with start_span(*names, metadata=metadata, entity=more.get("entity")) as span:
            span.set_metadata(more.get("result", {}))
        return
    metadata.update(more.get("result", {}))
    record_span(cast(Span, parent), *names, started, entity=more.get("entity"), metadata=metadata)


def _permission_check(parent: AnySpan, action: str) -> None:
    """As `Access.grant` records one."""
    _leaf(parent, CHECK, {"action": action}, entity=ENTITY, result={"result": "admin_bypass"})


def _statement(parent: AnySpan, statement: str) -> None:
    """As the `TracedCursor` records one."""
    _leaf(parent, QUERY, {"sql": statement}, result={"rows": 1})


def get_like(trace: Trace, user: str) -> None:
    """A traced `GET /api/{app}/order/{id}` as the kernel records it: 5 spans."""
    record_id = RECORD_ID
    root = start_root(trace, "http", "handler", "request", metadata=_root_metadata("GET"))
    with root:
        with start_span("auth", "middleware", "auth.validate"):
            trace.set_user(user)
        with start_span(
            "engine", "handler", "record.get", entity=ENTITY, record_id=record_id
        ) as handler:
            _permission_check(handler, "read")
            _statement(handler, SELECT_SQL)
        root.metadata["status_code"] = 200
        root.metadata["user_id"] = user
    trace.close()


def create_like(trace: Trace, user: str) -> None:
    """A traced `POST /api/{app}/order` as the kernel records it: 12 spans."""
    root = start_root(trace, "http", "handler", "request", metadata=_root_metadata("POST"))
    with root:
        with start_span("auth", "middleware", "auth.validate"):
            trace.set_user(user)
        with start_span("engine", "handler", "record.create", entity=ENTITY) as handler:
            _permission_check(handler, "create")
            with start_span("engine", "writer", "nested_write.plan", entity=ENTITY):
                pass
            with start_span("engine", "writer", "nested_write.execute", entity=ENTITY) as writer:
                for source, component, action, stage in STAGES:
                    metadata = {"stage": stage, "phase": "before_write", "action": "create"}
                    with start_span(source, component, action, entity=ENTITY, metadata=metadata):
                        pass
                _statement(writer, INSERT_SQL)
                metadata = {"stage": "permissions.check", "phase": "after_write"}
                with start_span(
                    "auth",
                    "permissions",
                    "permission.stage",
                    entity=ENTITY,
                    record_id=RECORD_ID,
                    metadata=metadata,
                ):
                    pass
        root.metadata["status_code"] = 201
        root.metadata["user_id"] = user
    trace.close()


CHUNK = 500  # requests recorded per timed chunk

KINDS: dict[str, tuple[Callable[[Trace, str], None], int]] = {
    "get": (get_like, 5),
    "create": (create_like, 12),
}


def _backend_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def measure(
    dsn: str, kind: str, requests: int, batch: int
) -> tuple[float, float, float, float]:
    """(µs of Python recording one request, µs of Python writing its rows, PostgreSQL µs per
    row, rows/s written) for `requests` requests of `kind`, flushed in batches of `batch`."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    async with pool.connection() as conn:
        await conn.execute("truncate _events")
        cursor = await conn.execute("select pg_backend_pid()")
        pid = (await cursor.fetchone() or [0])[0]
    flusher = EventFlusher(capacity=requests * 12 + 1, batch_size=10**9, interval=3600)
    tracer = AppTracer(flusher.buffer, 1.0)
    record, spans = KINDS[kind]
    user = str(uuid.uuid4())
    trace_ids = [str(uuid.uuid4()) for _ in range(requests)]
    recording = []  # CPU seconds per request, per chunk of CHUNK requests
    for offset in range(0, requests, CHUNK):
        chunk = trace_ids[offset : offset + CHUNK]
        started = time.process_time()
        for trace_id in chunk:
            trace = tracer.begin("bench", pool, trace_id)
            assert trace is not None
            record(trace, user)
        recording.append((time.process_time() - started) / len(chunk))
    rows = flusher.buffer.size
    assert rows == requests * spans, (rows, requests * spans)
    pg_before = _backend_seconds([pid])
    wall = time.perf_counter()
    writing = []  # CPU seconds per row, per batch
    while flusher.buffer.size:
        written = flusher.written
        started = time.process_time()
        await flusher._flush_app("bench")  # one batch (MAX_ROWS_PER_WRITE is set to `batch`)
        writing.append((time.process_time() - started) / (flusher.written - written))
    wall = time.perf_counter() - wall
    postgres = _backend_seconds([pid]) - pg_before
    await pool.close()
    assert flusher.failed == 0 and flusher.written == rows
    # the fastest chunk and batch: on a shared machine, interference only adds time
    return (
        min(recording) * 1e6,
        min(writing) * spans * 1e6,
        postgres / rows * 1e6,
        rows / wall,
    )


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    flusher_module.MAX_ROWS_PER_WRITE = args.batch  # type: ignore[misc]
    name = f"rocketbench_events_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(args.pg_url, dbname=name)
    results = {}
    try:
        asyncio.run(_apply(dsn))
        for kind in KINDS:
            uvloop.run(measure(dsn, kind, min(2000, args.requests), args.batch))  # warm-up
            results[kind] = uvloop.run(measure(dsn, kind, args.requests, args.batch))
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
    print(
        f"{args.requests} requests of each kind, COPY batches of {args.batch} rows; Python µs"
        f" of the fastest chunk of {CHUNK} requests and of the fastest batch"
    )
    print()
    print(
        "| request | rows | recording, µs of Python | writing its rows, µs of Python | "
        "total µs | PostgreSQL µs per row | per request | rows/s written |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, (recording, writing, per_row, rate) in results.items():
        spans = KINDS[kind][1]
        print(
            f"| {kind}-like | {spans} | {recording:.1f} | {writing:.1f} | "
            f"{recording + writing:.1f} | {per_row:.1f} | {per_row * spans:.0f} | {rate:,.0f} |"
        )
    return 0


async def _apply(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await apply_plan(conn, EVENTS_PLAN)
        await conn.commit()


if __name__ == "__main__":
    raise SystemExit(main())
