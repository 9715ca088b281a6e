"""Two real rocketd servers on one database: metadata created through server A is served by
server B (LISTEN/NOTIFY), found by polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.databases import dsn_for, unique_name
from tests.support.helpers import wait_until
from tests.support.processes import Instance, call, free_port, ready

pytestmark = pytest.mark.e2e


@pytest.fixture
def instances(pg_dsn: str, management_db: str, tmp_path: Path) -> Iterator[list[Instance]]:
    dsn = dsn_for(pg_dsn, management_db)
    started = [Instance(dsn, free_port(), tmp_path / f"rocketd-{i}.log") for i in range(2)]
    try:
        yield started
    finally:
        codes = [inst.stop() for inst in started]
        assert codes == [0, 0], [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]


async def test_entity_created_on_a_is_served_by_b(instances: list[Instance]) -> None:
    a, b = instances
    async with aiohttp.ClientSession() as http:
        for inst in instances:
            await wait_until(lambda inst=inst: ready(http, inst), "instance ready", timeout=60)
        status, body = await call(
            http,
            "POST",
            a.base + "/api/_platform/auth/login",
            body={"email": "platform@localhost", "password": "changeme"},
        )
        assert status == 200, body
        ptoken = body["data"]["access_token"]
        app = unique_name("twins")
        status, body = await call(
            http, "POST", a.base + "/api/_platform/apps", ptoken, {"name": app}
        )
        assert status == 201, body
        # The app created on A is served by B too (apps are announced like metadata).
        status, body = await call(
            http,
            "POST",
            b.base + f"/api/{app}/auth/login",
            body={"email": "admin@localhost", "password": "changeme"},
        )
        assert status == 200, body
        token = body["data"]["access_token"]

        entity = {
            "name": "note",
            "table": "notes",
            "primary_key": {"field": "id", "type": "uuid", "generated": True},
            "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
        }
        status, body = await call(
            http, "POST", a.base + f"/api/{app}/_admin/entities", token, entity
        )
        assert status == 201, body
        created_at = time.monotonic()
        # A answers only after swapping in the new snapshot: it serves the entity at once.
        status, body = await call(http, "GET", a.base + f"/api/{app}/note", token)
        assert status == 200, body

        async def b_serves_note() -> bool:
            s, _ = await call(http, "GET", b.base + f"/api/{app}/note", token)
            return s == 200

        await wait_until(b_serves_note, "server B serving the new entity", timeout=10)
        latency = time.monotonic() - created_at
        assert latency < 10
        status, body = await call(
            http, "POST", b.base + f"/api/{app}/note", token, {"text": "written on B"}
        )
        assert status == 201, body
        status, body = await call(http, "GET", a.base + f"/api/{app}/note", token)
        assert [r["text"] for r in body["data"]] == ["written on B"]

        # A field added on B shows up on A.
        entity["fields"].append({"name": "pinned", "type": "boolean", "default": False})
        status, body = await call(
            http, "PUT", b.base + f"/api/{app}/_admin/entities/note", token, entity
        )
        assert status == 200, body

        async def a_has_pinned() -> bool:
            s, got = await call(http, "GET", a.base + f"/api/{app}/note", token)
            return s == 200 and all("pinned" in r for r in got["data"])

        await wait_until(a_has_pinned, "server A serving the new field", timeout=10)
