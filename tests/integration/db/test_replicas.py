"""Lists and gets on a real streaming replica (`database.replica_urls`), with read-your-writes:
while the replica's replay is paused, the caller who wrote reads their write (from the primary,
after waiting `replica_wait` for the replica), and another caller reads the replica's older
state; once replay resumes, everyone sees it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from rocketd.config import DatabaseSettings, Settings
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for, unique_name
from tests.support.helpers import wait_until
from tests.support.schemas import NOTE


@pytest.fixture
async def replicated(
    primary_and_replica: tuple[str, str], settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Any, TestClient[Any, Any]]]:
    from rocketd.http.app import create_app
    from rocketd.runtime import Runtime

    primary, replica = primary_and_replica
    database = DatabaseSettings(
        url=dsn_for(primary, unique_name("rkt_mgmt_")),
        pool_size=5,
        replica_urls=(replica,),
        replica_wait=0.3,
    )
    runtime = Runtime(dataclasses.replace(settings, database=database))
    await runtime.start(http=False)
    try:
        async with TestClient(TestServer(create_app(runtime.services))) as client:
            yield runtime, client
    finally:
        await runtime.stop()


def caught_up(primary: str, replica: str) -> bool:
    with psycopg.connect(primary) as conn:
        lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()
    with psycopg.connect(replica) as conn:
        row = conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn).fetchone()
    return bool(row and row[0])


def set_replay(replica: str, paused: bool) -> None:
    call = "pg_wal_replay_pause" if paused else "pg_wal_replay_resume"
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute(f"select {call}()")


async def second_admin(client: Any, app: AppClient) -> AppClient:
    user = {"email": "reader@example.com", "password": "reader-pass-1", "roles": ["admin"]}
    await app.ok("POST", "_admin/users", user, 201)
    resp = await client.post(
        app.url("auth/login"), json={"email": user["email"], "password": user["password"]}
    )
    assert resp.status == 200, await resp.text()
    return AppClient(client, app.name, (await resp.json())["data"]["access_token"])


async def test_reads_go_to_the_replica_and_callers_read_their_own_writes(
    replicated: tuple[Any, Any], primary_and_replica: tuple[str, str]
) -> None:
    _runtime, client = replicated
    primary, replica = primary_and_replica
    writer = await new_app(client)
    await writer.ok("POST", "_admin/entities", NOTE, 201)
    reader = await second_admin(client, writer)
    first = (await writer.ok("POST", "note", {"n": 1}, 201))["data"]
    await wait_until(lambda: caught_up(primary, replica), "the replica caught up", timeout=30)
    assert (await reader.ok("GET", "note"))["meta"]["total"] == 1

    set_replay(replica, paused=True)
    try:
        second = (await writer.ok("POST", "note", {"n": 2}, 201))["data"]
        # The writer: the replica has not replayed their write, so the primary answers.
        assert (await writer.ok("GET", "note"))["meta"]["total"] == 2
        assert (await writer.ok("GET", f"note/{second['id']}"))["data"]["n"] == 2
        # Another caller reads the (paused) replica: the write is not there yet.
        assert (await reader.ok("GET", "note"))["meta"]["total"] == 1
        resp = await client.get(writer.url(f"note/{second['id']}"), headers=reader.headers)
        assert resp.status == 404
        assert (await reader.ok("GET", f"note/{first['id']}"))["data"]["n"] == 1
    finally:
        set_replay(replica, paused=False)

    async def everyone_sees_it() -> bool:
        return bool((await reader.ok("GET", "note"))["meta"]["total"] == 2)

    await wait_until(everyone_sees_it, "the replica replaying the write", timeout=30)
