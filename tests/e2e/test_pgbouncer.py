"""rocketd behind a real PgBouncer in transaction mode: `database.url` through the pooler,
`database.listen_url` straight to PostgreSQL for LISTEN and the session advisory locks (the
scheduler's, an app's lifecycle lock), no server-side prepared statements on pooled connections.

Two instances: an app created and an entity defined through A are served by B (the notifications
came over the direct listeners), and both serve repeated reads and writes (past psycopg's
prepare threshold) without an error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, call, free_port, new_app_admin, ready
from tests.support.schemas import NOTE

pytestmark = pytest.mark.e2e


@pytest.fixture
def bounced(
    pg_dsn: str, pgbouncer_dsn: str, management_db: str, tmp_path: Path
) -> Iterator[list[Instance]]:
    env = {
        "ROCKET_DATABASE_LISTEN_URL": dsn_for(pg_dsn, management_db),
        "ROCKET_SERVER_WORKERS": "1",
    }
    through = dsn_for(pgbouncer_dsn, management_db)
    started = [Instance(through, free_port(), tmp_path / f"rocketd-{i}.log", env) for i in range(2)]
    try:
        yield started
    finally:
        codes = [inst.stop() for inst in started]
        assert codes == [0, 0], [p.read_text()[-3000:] for p in tmp_path.glob("*.log")]


async def test_two_instances_behind_pgbouncer_in_transaction_mode(
    bounced: list[Instance], pgbouncer_dsn: str, management_db: str
) -> None:
    a, b = bounced
    async with aiohttp.ClientSession() as http:
        for inst in bounced:
            await wait_until(lambda inst=inst: ready(http, inst), "ready", timeout=60)
        app, token = await new_app_admin(http, a.base, "bounced")
        status, body = await call(http, "POST", a.base + f"/api/{app}/_admin/entities", token, NOTE)
        assert status == 201, body

        async def served_by_b() -> bool:
            status, _ = await call(http, "GET", b.base + f"/api/{app}/note", token)
            return status == 200

        await wait_until(served_by_b, "the entity announced to B", timeout=60, interval=0.1)

        async def work(inst: Instance, n: int) -> None:
            status, body = await call(http, "POST", inst.base + f"/api/{app}/note", token, {"n": n})
            assert status == 201, body
            status, body = await call(http, "GET", inst.base + f"/api/{app}/note?per_page=1", token)
            assert status == 200, body

        # Well past psycopg's prepare threshold (5), concurrently, on both instances.
        for round_ in range(5):
            await asyncio.gather(
                *(work(inst, round_ * 10 + i) for inst in bounced for i in range(8))
            )
        status, body = await call(http, "GET", b.base + f"/api/{app}/note", token)
        assert body["meta"]["total"] == 80
    # Every pooled connection really went through PgBouncer (its SHOW POOLS names the app db).
    with psycopg.connect(
        pgbouncer_dsn.rsplit("/", 1)[0] + "/pgbouncer", autocommit=True, prepare_threshold=None
    ) as admin:
        databases = {row[0] for row in admin.execute("show pools").fetchall()}
    assert {management_db, f"rocket_{app}"} <= databases
