"""Events tests' helpers: a runtime with tuned settings, and reading a trace back through the
API once the event flusher wrote it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rocketd.config import Settings
from rocketd.http.app import create_app
from rocketd.runtime import Runtime
from tests.support.apps import AppClient
from tests.support.helpers import wait_until


async def trace_rows(app: AppClient, trace_id: str, at_least: int = 1) -> list[dict[str, Any]]:
    """The trace's rows (as `app`, an admin) once at least `at_least` of them were written."""
    rows: list[dict[str, Any]] = []

    async def arrived() -> bool:
        nonlocal rows
        status, body = await app.call("GET", f"_events?trace_id={trace_id}&per_page=100")
        assert status == 200, body
        rows = body["data"]
        return len(rows) >= at_least

    await wait_until(arrived, f"events of trace {trace_id}")
    return rows


@asynccontextmanager
async def runtime_client(settings: Settings, aiohttp_client: Any) -> AsyncIterator[Any]:
    """A test client on a started runtime with `settings` (stopped afterwards)."""
    runtime = Runtime(settings)
    await runtime.start(http=False)
    try:
        yield await aiohttp_client(create_app(runtime.services))
    finally:
        await runtime.stop()
