"""Small helpers shared by the test modules (no fixtures here: see conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

PLATFORM_EMAIL = "platform@localhost"
APP_ADMIN_EMAIL = "admin@localhost"
DEFAULT_PASSWORD = "changeme"


async def wait_until(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    what: str = "condition",
    timeout: float = 10.0,
    interval: float = 0.005,
) -> None:
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def error_of(resp: Any) -> dict[str, Any]:
    """The `error` object of a contract error body (asserting the shape on the way)."""
    body = await resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str), err
    assert set(err) <= {"code", "message", "details"}, err
    return dict(err)


async def platform_login(client: Any) -> dict[str, Any]:
    resp = await client.post(
        "/api/_platform/auth/login", json={"email": PLATFORM_EMAIL, "password": DEFAULT_PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["data"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
