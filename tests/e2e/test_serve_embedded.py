"""End to end: the real `rocketd serve` process on the zero-configuration default (embedded
PostgreSQL), walking the README's curl flow over HTTP, then SIGTERM, then a restart that still
has the data. The embedded server refuses TCP connections without its generated password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support.processes import EmbeddedServer as Server
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def assert_embedded_postgres_needs_its_password(data_dir: Path) -> None:
    password_file = data_dir / "postgres.password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    pg_port = json.loads((data_dir / "postgres.json").read_text())["port"]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres", connect_timeout=5)
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/rocket_shop"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)


async def test_readme_flow_on_embedded_postgres_and_restart(data_dir: Path) -> None:
    port = free_port()
    server = Server(data_dir, port)
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
            async with http.get(server.base + "/health") as resp:
                assert await resp.json() == {"status": "ok"}
            status, body = await post(
                http,
                server.base + "/api/_platform/auth/login",
                {"email": "platform@localhost", "password": "changeme"},
            )
            assert status == 200, body
            ptoken = body["data"]["access_token"]
            status, body = await post(
                http,
                server.base + "/api/_platform/apps",
                {"name": "shop", "display_name": "Shop"},
                ptoken,
            )
            assert status == 201, body
            assert body["data"]["db_name"] == "rocket_shop"
            status, body = await post(
                http,
                server.base + "/api/shop/auth/login",
                {"email": "admin@localhost", "password": "changeme"},
            )
            assert status == 200, body
            assert set(body["data"]) >= {"access_token", "refresh_token"}
            token = body["data"]["access_token"]
            status, body = await post(
                http,
                server.base + "/api/shop/_admin/entities",
                {
                    "name": "note",
                    "table": "notes",
                    "primary_key": {"field": "id", "type": "uuid", "generated": True},
                    "fields": [
                        {"name": "id", "type": "uuid"},
                        {"name": "text", "type": "string", "required": True},
                    ],
                },
                token,
            )
            assert status == 201, body
            status, body = await post(
                http, server.base + "/api/shop/note", {"text": "hello"}, token
            )
            assert status == 201, body
            async with http.get(
                server.base + "/api/shop/note?sort=-text",
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                listed = await resp.json()
            assert [r["text"] for r in listed["data"]] == ["hello"]
            assert listed["meta"] == {"page": 1, "per_page": 25, "total": 1}
            assert_embedded_postgres_needs_its_password(data_dir)
        code = server.terminate()
        assert code == 0, (data_dir / "rocketd.log").read_text()[-3000:]
    finally:
        server.kill()
    log_text = (data_dir / "rocketd.log").read_text()
    assert "embedded" in log_text and '"event": "stopped"' in log_text
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "PostgreSQL left running"

    # Restart on the same data dir: the app created before is still there.
    server = Server(data_dir, port)
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
            status, body = await post(
                http,
                server.base + "/api/shop/auth/login",
                {"email": "admin@localhost", "password": "changeme"},
            )
            assert status == 200, body
            token = body["data"]["access_token"]
            async with http.get(
                server.base + "/api/shop/note", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert [r["text"] for r in (await resp.json())["data"]] == ["hello"]
        assert server.terminate() == 0
    finally:
        server.kill()
