"""Instrumentation settings (off, sampling), the retention jobs of `_events` and `_webhook_logs`,
and the flusher: it keeps going when one app database fails, and writes through connections of
its own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.events.flusher import EventFlusher
from rocketd.capabilities.events.retention import expire_events
from rocketd.capabilities.webhooks.retention import expire_logs
from rocketd.config import Settings
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.events import runtime_client, trace_rows

LOW = "00000000-0000-4000-8000-000000000000"  # sampled at any rate above 0
HIGH = "ffffffff-0000-4000-8000-000000000000"  # sampled only at rate 1


@pytest.fixture
async def tuned(settings: Settings, aiohttp_client: Any, request: Any) -> AsyncIterator[Any]:
    """A runtime and client with `request.param` as the instrumentation settings."""
    tuned = dataclasses.replace(
        settings, instrumentation=dataclasses.replace(settings.instrumentation, **request.param)
    )
    async with runtime_client(tuned, aiohttp_client) as c:
        yield c


def count(pg_dsn: str, app: AppClient, query: str = "select count(*) from _events") -> int:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("tuned", [{"enabled": False}], indirect=True)
async def test_instrumentation_off_stores_nothing(tuned: Any, pg_dsn: str) -> None:
    app = await new_app(tuned)
    resp = await tuned.post(
        app.url("_events"), json={"action": "x"}, headers={**app.headers, "X-Trace-ID": LOW}
    )
    assert resp.status == 200 and resp.headers["X-Trace-ID"] == LOW
    assert await resp.json() == {"data": {"status": "ok"}}
    status, body = await app.call("GET", "_events")
    assert status == 200 and body["data"] == []  # the table exists, nothing is written
    assert count(pg_dsn, app) == 0


@pytest.mark.parametrize("tuned", [{"sampling_rate": 0.5, "flush_interval_ms": 20}], indirect=True)
async def test_sampling_keeps_whole_traces_or_none(tuned: Any, pg_dsn: str) -> None:
    app = await new_app(tuned)
    for trace_id in (HIGH, LOW):
        resp = await tuned.post(
            app.url("_events"),
            json={"action": "x"},
            headers={**app.headers, "X-Trace-ID": trace_id},
        )
        assert resp.status == 200
    rows = await trace_rows(app, LOW, at_least=3)
    assert {r["action"] for r in rows} >= {"request", "auth.validate", "x"}
    _, body = await app.call("GET", f"_events?trace_id={HIGH}")
    assert body["data"] == []


async def test_events_retention(runtime: Any, client: Any, pg_dsn: str) -> None:
    app = await new_app(client)
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        for age in (1, 6, 8, 30):
            conn.execute(
                "insert into _events (trace_id, span_id, event_type, source, component, action,"
                " created_at) values (%s, %s, 'business', 'business', 'api', %s,"
                " now() - make_interval(days => %s))",
                (uuid.uuid4(), uuid.uuid4(), f"age{age}", age),
            )
    await expire_events(runtime.services.directory, 7)()
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        left = {r[0] for r in conn.execute("select action from _events where action like 'age%'")}
    assert left == {"age1", "age6"}


async def test_webhook_log_retention_keeps_unfinished_rows(
    runtime: Any, client: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        for status, age in (("delivered", 40), ("failed", 40), ("pending", 40), ("delivered", 2)):
            conn.execute(
                "insert into _webhook_logs (entity, hook, url, method, status, idempotency_key,"
                " updated_at) values ('e', 'after_write', 'http://x', 'POST', %s, 'k',"
                " now() - make_interval(days => %s))",
                (status, age),
            )
    await expire_logs(runtime.services.directory, 30)()
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        left = sorted(
            (r[0], r[1].days)
            for r in conn.execute("select status, now() - updated_at from _webhook_logs")
        )
    assert [s for s, _ in left] == ["delivered", "pending"]


async def test_a_failing_app_database_does_not_stop_the_others(
    runtime: Any, client: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    good = runtime.services.directory.actors[app.name].pool
    broken: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn_for(pg_dsn, "rocket_does_not_exist_" + uuid.uuid4().hex[:8]), open=False
    )
    flusher = EventFlusher(capacity=100, batch_size=50, interval=60)
    row = (
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        None,
        "business",
        "business",
        "api",
        "kept",
        None,
        None,
        None,
        None,
        None,
        {"k": 1},
        0,
    )
    lost = (*row[:6], "lost", *row[7:])
    flusher.buffer.add("gone", broken, [lost])  # type: ignore[list-item]
    flusher.buffer.add(app.name, good, [row])  # type: ignore[list-item]
    await flusher.flush()
    await flusher.on_stop()
    assert flusher.failed == 1 and flusher.written == 1
    assert count(pg_dsn, app, "select count(*) from _events where action = 'kept'") == 1


def _event_row(action: str) -> Any:
    return (
        *(str(uuid.uuid4()), str(uuid.uuid4()), None),
        *("business", "business", "api", action),
        *(None, None, None, None, None, {"k": 1}, 0),
    )


async def test_the_flusher_never_takes_a_connection_the_requests_need(
    runtime: Any, client: Any, pg_dsn: str
) -> None:
    """Event writing never blocks a request: the flusher writes through a connection of its
    own, so an app pool whose every connection is busy does not hold it up (nor the other way
    round: a COPY never holds one of the pool's)."""
    app = await new_app(client)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn_for(pg_dsn, f"rocket_{app.name}"), min_size=1, max_size=1, timeout=0.5, open=False
    )
    await pool.open()
    flusher = EventFlusher(capacity=100, batch_size=50, interval=60)
    try:
        async with pool.connection():  # the pool's only connection, busy
            flusher.buffer.add(app.name, pool, [_event_row("while-busy")])
            await flusher.flush()
            assert pool.get_stats().get("requests_waiting", 0) == 0
        assert flusher.failed == 0 and flusher.written == 1
        assert set(flusher.connections) == {app.name}
    finally:
        await flusher.on_stop()
        await pool.close()
    assert flusher.connections == {}  # closed on stop
    assert count(pg_dsn, app, "select count(*) from _events where action = 'while-busy'") == 1


async def test_a_lost_event_connection_is_replaced_without_losing_the_batch(
    runtime: Any, client: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    pool = runtime.services.directory.actors[app.name].pool
    flusher = EventFlusher(capacity=100, batch_size=50, interval=60)
    try:
        flusher.buffer.add(app.name, pool, [_event_row("first")])
        await flusher.flush()
        pid = flusher.connections[app.name][0].info.backend_pid
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # the server drops it while idle
            admin.execute("select pg_terminate_backend(%s)", (pid,))
        flusher.buffer.add(app.name, pool, [_event_row("second")])
        await flusher.flush()
        assert flusher.failed == 0 and flusher.written == 2
        assert flusher.connections[app.name][0].info.backend_pid != pid
    finally:
        await flusher.on_stop()
    stored = "select count(*) from _events where action in ('first', 'second')"
    assert count(pg_dsn, app, stored) == 2


async def test_idle_event_connections_close(runtime: Any, client: Any, pg_dsn: str) -> None:
    app = await new_app(client)
    pool = runtime.services.directory.actors[app.name].pool
    flusher = EventFlusher(capacity=100, batch_size=1, interval=0.02, idle_seconds=0.2)
    task = asyncio.create_task(flusher.run())
    try:
        flusher.buffer.add(app.name, pool, [_event_row("idle")])
        for _ in range(100):
            if flusher.written:
                break
            await asyncio.sleep(0.02)
        assert set(flusher.connections) == {app.name}
        for _ in range(100):  # about 0.2 s without events, then the next wake-up closes it
            if not flusher.connections:
                break
            await asyncio.sleep(0.02)
        assert flusher.connections == {} and flusher.written == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await flusher.on_stop()


async def test_the_events_table_and_its_indexes(client: Any, pg_dsn: str) -> None:
    app = await new_app(client)
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        indexes = {
            r[0]: r[1]
            for r in conn.execute(
                "select indexname, indexdef from pg_indexes where tablename = '_events'"
            )
        }
        versions = conn.execute(
            "select version from _schema_versions where scope = 'app:events'"
        ).fetchall()
    assert versions == [(1,)]
    assert "(trace_id)" in indexes["idx_events_trace"]
    assert "(entity, created_at DESC)" in indexes["idx_events_entity_created"]
    assert "(created_at DESC)" in indexes["idx_events_created"]
    assert "(event_type, source)" in indexes["idx_events_type_source"]
    assert "_events_pkey" in indexes
