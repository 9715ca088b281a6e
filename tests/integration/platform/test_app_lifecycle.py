"""App lifecycle across crashes and instances: repair of half-made apps, lazy start of apps
created elsewhere, deletion seen by every instance, and a crashing AppActor coming back."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from rocketd.config import Settings
from rocketd.platform import apps
from rocketd.runtime import Runtime
from tests.support.databases import dsn_for, unique_name
from tests.support.helpers import bearer, error_of, platform_login, wait_until


def mgmt(pg_dsn: str, management_db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn_for(pg_dsn, management_db), autocommit=True)


def database_exists(pg_dsn: str, name: str) -> bool:
    with psycopg.connect(pg_dsn) as conn:
        return (
            conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            is not None
        )


async def test_interrupted_creation_is_finished_at_next_start(
    settings: Settings, pg_dsn: str, management_db: str
) -> None:
    rt = Runtime(settings)
    await rt.start(http=False)
    await rt.stop()
    name = unique_name("half")
    # A crash right after the row was written and before the database existed.
    with mgmt(pg_dsn, management_db) as conn:
        conn.execute(
            "insert into _apps (name, display_name, db_name, jwt_secret, status)"
            " values (%s, %s, %s, 'x', 'provisioning')",
            (name, name, f"rocket_{name}"),
        )
    rt = Runtime(settings)
    await rt.start(http=False)
    try:
        row = await apps.find_app(rt.services.management_pool, name)  # type: ignore[union-attr]
        assert row is not None and row.status == "active"
        assert database_exists(pg_dsn, f"rocket_{name}")
        actor = await rt.services.directory.resolve(name)  # type: ignore[union-attr]
        assert actor is not None and actor.running
    finally:
        await rt.stop()


async def test_interrupted_deletion_is_finished_at_next_start(
    settings: Settings, pg_dsn: str, management_db: str
) -> None:
    rt = Runtime(settings)
    await rt.start(http=False)
    name = unique_name("del")
    assert rt.services is not None
    await rt.services.directory.create_app(name, None, None)
    await rt.stop()
    with mgmt(pg_dsn, management_db) as conn:
        conn.execute("update _apps set status = 'deleting' where name = %s", (name,))
    rt = Runtime(settings)
    await rt.start(http=False)
    try:
        assert await apps.find_app(rt.services.management_pool, name) is None  # type: ignore[union-attr]
        assert not database_exists(pg_dsn, f"rocket_{name}")
    finally:
        await rt.stop()


async def test_existing_foreign_database_is_not_adopted_or_dropped(
    client: Any, pg_dsn: str
) -> None:
    name = unique_name("foreign")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(f"rocket_{name}")))
    try:
        token = (await platform_login(client))["access_token"]
        resp = await client.post("/api/_platform/apps", json={"name": name}, headers=bearer(token))
        assert resp.status == 409
        assert (await error_of(resp))["code"] == "CONFLICT"
        assert database_exists(pg_dsn, f"rocket_{name}")
        resp = await client.get("/api/_platform/apps", headers=bearer(token))
        assert (await resp.json())["data"] == []
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {}").format(sql.Identifier(f"rocket_{name}"))
            )


@pytest.fixture
async def second_runtime(settings: Settings) -> Any:
    rt = Runtime(settings)
    await rt.start(http=False)
    yield rt
    await rt.stop()


async def test_app_created_on_one_instance_is_served_and_deleted_on_another(
    client: Any, second_runtime: Runtime, aiohttp_client: Any
) -> None:
    from rocketd.http.app import create_app

    other = await aiohttp_client(create_app(second_runtime.services))  # type: ignore[arg-type]
    name = unique_name("multi")
    # Instance B sees the name as unknown first (and caches that briefly)...
    resp = await other.post(f"/api/{name}/auth/login", json={"email": "a", "password": "b"})
    assert resp.status == 404
    token = (await platform_login(client))["access_token"]
    resp = await client.post("/api/_platform/apps", json={"name": name}, headers=bearer(token))
    assert resp.status == 201

    # ...and the create notification clears that, so B serves the app at once.
    async def b_serves() -> bool:
        r = await other.post(
            f"/api/{name}/auth/login", json={"email": "admin@localhost", "password": "changeme"}
        )
        return bool(r.status == 200)

    await wait_until(b_serves, what="instance B serving the new app")
    assert name in second_runtime.services.directory.actors  # type: ignore[union-attr]

    resp = await client.delete(f"/api/_platform/apps/{name}", headers=bearer(token))
    assert resp.status == 200
    await wait_until(
        lambda: name not in second_runtime.services.directory.actors,  # type: ignore[union-attr]
        what="instance B dropping the deleted app",
    )
    resp = await other.post(f"/api/{name}/auth/login", json={"email": "a", "password": "b"})
    assert resp.status == 404


async def test_crashing_app_actor_is_restarted_and_keeps_serving(
    client: Any, runtime: Runtime
) -> None:
    token = (await platform_login(client))["access_token"]
    name = unique_name("crash")
    assert (
        await client.post("/api/_platform/apps", json={"name": name}, headers=bearer(token))
    ).status == 201
    assert runtime.services is not None
    actor = runtime.services.directory.actors[name]
    actor.tell("not-a-message")  # an unknown message makes handle() raise: the actor crashes
    await wait_until(
        lambda: runtime.services.supervisor.restarts(actor.name) >= 1,  # type: ignore[union-attr]
        what="supervisor restart",
    )
    await wait_until(lambda: actor.running, what="actor running again")
    resp = await client.post(
        f"/api/{name}/auth/login", json={"email": "admin@localhost", "password": "changeme"}
    )
    assert resp.status == 200


async def test_concurrent_creates_of_one_name_give_one_app_and_one_409(client: Any) -> None:
    import asyncio

    token = (await platform_login(client))["access_token"]
    name = unique_name("race")
    results = await asyncio.gather(
        *(
            client.post("/api/_platform/apps", json={"name": name}, headers=bearer(token))
            for _ in range(3)
        )
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [201, 409, 409]
