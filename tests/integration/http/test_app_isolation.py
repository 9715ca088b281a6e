"""One tenant never takes down the rest: an app whose database is unreachable, dropped, or too
busy to hand out a connection answers 503 `SERVICE_UNAVAILABLE` in the error shape, every other
app keeps serving, and `/ready` and the watchdog's check stay healthy (`/ready` names the app)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from rocketd.capabilities.events.retention import expire_events
from rocketd.capabilities.workflows.runner import WorkflowRunner
from rocketd.config import Settings
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import error_of, wait_until
from tests.support.schemas import NOTE


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, app_pool_timeout=0.5)


@pytest.fixture
async def two_apps(client: Any) -> AsyncIterator[tuple[AppClient, AppClient]]:
    sick, healthy = await new_app(client), await new_app(client)
    for app in (sick, healthy):
        await app.ok("POST", "_admin/entities", NOTE, 201)
        await app.ok("POST", "note", {"n": 1}, 201)
    yield sick, healthy


async def assert_isolated(runtime: Any, client: Any, sick: AppClient, healthy: AppClient) -> None:
    resp = await client.get(sick.url("note"), headers=sick.headers)
    assert resp.status == 503
    err = await error_of(resp)
    assert err["code"] == "SERVICE_UNAVAILABLE"
    assert sick.name in err["message"]
    assert (await healthy.ok("GET", "note"))["meta"]["total"] == 1
    await healthy.ok("POST", "note", {"n": 2}, 201)
    resp = await client.get("/ready")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["apps"][healthy.name] == "ok"
    assert await runtime._healthy()  # the systemd watchdog keeps pinging


def database_of(runtime: Any, app: AppClient) -> str:
    return str(runtime.services.directory.actors[app.name].db_name)


async def test_an_unreachable_app_database_costs_that_app_only(
    runtime: Any, client: Any, two_apps: tuple[AppClient, AppClient], pg_dsn: str
) -> None:
    sick, healthy = two_apps
    db = database_of(runtime, sick)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("alter database {} allow_connections false").format(sql.Identifier(db))
        )
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (db,)
        )
    try:
        await assert_isolated(runtime, client, sick, healthy)

        async def reported() -> bool:
            body = await (await client.get("/ready")).json()
            return bool(body["apps"].get(sick.name) == "unavailable")

        await wait_until(reported, "the app reported unavailable in /ready", timeout=10)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("alter database {} allow_connections true").format(sql.Identifier(db))
            )

    # It comes back by itself once its database answers again.
    async def served() -> bool:
        return (await sick.call("GET", "note"))[0] == 200

    await wait_until(served, "the app serving again", timeout=30, interval=0.2)


async def test_a_dropped_app_database_costs_that_app_only(
    runtime: Any, client: Any, two_apps: tuple[AppClient, AppClient], pg_dsn: str
) -> None:
    sick, healthy = two_apps
    db = database_of(runtime, sick)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(db)))
    await assert_isolated(runtime, client, sick, healthy)


async def test_an_app_out_of_connections_costs_that_app_only(
    runtime: Any, client: Any, two_apps: tuple[AppClient, AppClient]
) -> None:
    sick, healthy = two_apps
    pool = runtime.services.directory.actors[sick.name].pool
    release = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with pool.connection():  # a slow query would hold it the same way
            held += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(pool.max_size)]
    try:
        await wait_until(lambda: held == pool.max_size, "the pool exhausted")
        await assert_isolated(runtime, client, sick, healthy)
    finally:
        release.set()
        await asyncio.gather(*holders)
    await sick.ok("GET", "note")


def _old_events(pg_dsn: str, db: str) -> int:
    with psycopg.connect(dsn_for(pg_dsn, db)) as conn:
        row = conn.execute("select count(*) from _events where action = 'old'").fetchone()
        return int(row[0]) if row else 0


async def test_background_jobs_skip_a_busy_app_and_serve_the_others(
    runtime: Any, two_apps: tuple[AppClient, AppClient], pg_dsn: str
) -> None:
    """Every per-app scheduler job (retention, workflow resume/timeouts/retention, the
    refresh-token purge) meets the busy app first and still does the next app's work."""
    sick, healthy = two_apps
    directory = runtime.services.directory
    visited = [name for name in directory.actors if name in (sick.name, healthy.name)]
    assert visited == [sick.name, healthy.name]  # the failure comes first
    for app in (sick, healthy):
        with psycopg.connect(dsn_for(pg_dsn, database_of(runtime, app))) as conn:
            conn.execute(
                "insert into _events (trace_id, span_id, event_type, source, component, action,"
                " created_at) values (gen_random_uuid(), gen_random_uuid(), 'business',"
                " 'business', 'api', 'old', now() - interval '30 days')"
            )
    pool = directory.actors[sick.name].pool
    release = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with pool.connection():
            held += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(pool.max_size)]
    try:
        await wait_until(lambda: held == pool.max_size, "the pool exhausted")
        assert directory.actors[sick.name].running  # so each job does meet its failure
        runner = WorkflowRunner(directory, retention_days=30)
        for job in (
            expire_events(directory, 7),
            runner.purge,
            runner.timeouts,
            runner.resume_all,
            runtime._purge_tokens,
        ):
            await job()  # the busy app's PoolTimeout is logged, not raised
    finally:
        release.set()
        await asyncio.gather(*holders)
    assert _old_events(pg_dsn, database_of(runtime, healthy)) == 0
    assert _old_events(pg_dsn, database_of(runtime, sick)) == 1  # skipped, not half-done


async def test_the_daemon_starts_ready_beside_an_app_whose_database_is_down(
    runtime: Any, settings: Settings, two_apps: tuple[AppClient, AppClient], pg_dsn: str
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from rocketd.http.app import create_app
    from rocketd.runtime import Runtime

    sick, healthy = two_apps
    db = database_of(runtime, sick)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("alter database {} allow_connections false").format(sql.Identifier(db))
        )
    second = Runtime(settings)
    try:
        await second.start(http=False)
        async with TestClient(TestServer(create_app(second.services))) as other:

            async def healthy_listening() -> bool:  # its listener connects in the background
                body = await (await other.get("/ready")).json()
                return bool(body["apps"].get(healthy.name) == "ok")

            await wait_until(healthy_listening, "the healthy app listening", timeout=10)
            resp = await other.get("/ready")
            body = await resp.json()
            assert resp.status == 200, body
            assert body["apps"][sick.name] == "unavailable"
            assert await second._healthy()
            resp = await other.get(healthy.url("note"), headers=healthy.headers)
            assert resp.status == 200
            resp = await other.get(sick.url("note"), headers=sick.headers)
            assert resp.status == 503
            assert (await error_of(resp))["code"] == "SERVICE_UNAVAILABLE"
    finally:
        await second.stop()
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("alter database {} allow_connections true").format(sql.Identifier(db))
            )
