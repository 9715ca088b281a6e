"""Stopping starts with draining: /ready answers 503 while requests are still served, and every
response closes its connection (rocketd.http.server.HttpRunner.drain)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from rocketd.http.app import create_app
from rocketd.http.server import HttpRunner


async def test_draining_turns_ready_false_and_closes_connections(runtime: Any) -> None:
    runner = HttpRunner(create_app(runtime.services), runtime.settings.server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/ready") as resp:
                assert resp.status == 200
                assert resp.headers.get("Connection", "").lower() != "close"
            await runner.drain(0)
            async with http.get(base + "/ready") as resp:
                body = await resp.json()
                assert resp.status == 503
                assert body["status"] == "unavailable"
                assert body["checks"]["server"] == "draining"
                assert resp.headers["Connection"].lower() == "close"
            async with http.get(base + "/health") as resp:  # still serving meanwhile
                assert resp.status == 200
                assert resp.headers["Connection"].lower() == "close"
    finally:
        await runner.cleanup()
