"""`GET /health` (the process is alive) and `GET /ready` (it can serve: management database and
the daemon's own actors; each app's state is in the body but never makes it unready)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from rocketd.http.keys import DRAINING, SERVICES
from rocketd.http.policy import public
from rocketd.http.responses import json_body

READY_TIMEOUT = 2.0


@public
async def health(request: web.Request) -> web.StreamResponse:
    return json_body({"status": "ok"})


@public
async def ready(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with services.management_pool.connection() as conn:
                await conn.execute("select 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready", reported by class name only
        checks["database"] = f"unavailable ({type(exc).__name__})"
    down = services.directory.daemon_not_running()
    checks["actors"] = "ok" if not down else "not running: " + ", ".join(sorted(down))
    draining = request.app.get(DRAINING)
    if draining is not None and draining.is_set():
        checks["server"] = "draining"  # stopping: a balancer sends new requests elsewhere
    ok = all(v == "ok" for v in checks.values())
    # Per app, for the operator: one app's database failing never makes the daemon unready.
    apps = services.directory.app_states()
    return json_body(
        {"status": "ready" if ok else "unavailable", "checks": checks, "apps": apps},
        200 if ok else 503,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
