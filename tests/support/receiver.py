"""A real webhook receiver on 127.0.0.1 for tests and benchmarks (aiohttp server)."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1 on a free port: (its runner, to clean up; the port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


class LoopbackServer:
    """`stop` for a test server started with `serve_on_loopback` into `_runner`."""

    _runner: web.AppRunner | None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Receiver(LoopbackServer):
    """Records every request; answers `status` (or a scripted list), optionally slowly, and may
    fail a random share of requests with 500."""

    status: int = 200
    script: list[int] = field(default_factory=list)  # statuses for the next requests, in order
    delay: float = 0.0
    fail_ratio: float = 0.0
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    seed: int = 7
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # the answer to each received request
    port: int = 0
    _runner: web.AppRunner | None = None
    _random: random.Random = field(default_factory=random.Random)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status = self.script.pop(0) if self.script else self.status
        if self.fail_ratio and self._random.random() < self.fail_ratio:
            status = 500
        self.received.append(
            Received(request.method, request.path, dict(request.headers), await request.read())
        )
        self.statuses.append(status)
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=status, text=self.body, headers=self.headers)

    async def start(self) -> Receiver:
        self._random = random.Random(self.seed)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve_on_loopback(app)
        return self
