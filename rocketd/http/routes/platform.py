"""`/api/_platform/*`: platform login, refresh, logout, and app management."""

from __future__ import annotations

from aiohttp import web

from rocketd.http.bodies import INVALID_REQUEST_BODY, read_strict_object
from rocketd.http.keys import SERVICES
from rocketd.http.login import PLATFORM_SCOPE, log_in
from rocketd.http.policy import platform, public
from rocketd.http.responses import data, message
from rocketd.platform import apps

AUTH_TOKEN_KEYS = ("refresh_token",)
APP_CREATE_KEYS = ("name", "display_name", "db_driver")


@public
async def login(request: web.Request) -> web.StreamResponse:
    return await log_in(request, request.app[SERVICES].platform_accounts, PLATFORM_SCOPE)


@public
async def refresh(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(request, AUTH_TOKEN_KEYS, INVALID_REQUEST_BODY, AUTH_TOKEN_KEYS)
    pair = await request.app[SERVICES].platform_accounts.refresh(body.get("refresh_token"))
    return data(pair.to_json())


@public
async def logout(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(request, AUTH_TOKEN_KEYS, INVALID_REQUEST_BODY, AUTH_TOKEN_KEYS)
    await request.app[SERVICES].platform_accounts.logout(body.get("refresh_token"))
    return message("Logged out")


@platform
async def list_apps(request: web.Request) -> web.StreamResponse:
    rows = await apps.list_apps(request.app[SERVICES].management_pool)
    return data([r.to_json() for r in rows if r.status == apps.STATUS_ACTIVE])


@platform
async def create_app(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(
        request, APP_CREATE_KEYS, INVALID_REQUEST_BODY, strings=APP_CREATE_KEYS
    )
    services = request.app[SERVICES]
    row = await services.directory.create_app(
        body.get("name"), body.get("display_name"), body.get("db_driver")
    )
    return data(row.to_json(), 201)


@platform
async def get_app(request: web.Request) -> web.StreamResponse:
    row = await apps.get_app(request.app[SERVICES].management_pool, request.match_info["name"])
    return data(row.to_json())


@platform
async def delete_app(request: web.Request) -> web.StreamResponse:
    await request.app[SERVICES].directory.delete_app(request.match_info["name"])
    return message("App deleted")


@platform
async def ai_status(request: web.Request) -> web.StreamResponse:
    return data(ai_status_body(request))


def ai_status_body(request: web.Request) -> dict[str, object]:
    ai = request.app[SERVICES].settings.ai
    configured = bool(ai.base_url and ai.api_key and ai.model)
    return {"configured": configured, "model": ai.model if configured else ""}


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/_platform/auth/login", login)
    r.add_post("/api/_platform/auth/refresh", refresh)
    r.add_post("/api/_platform/auth/logout", logout)
    r.add_get("/api/_platform/apps", list_apps)
    r.add_post("/api/_platform/apps", create_app)
    r.add_get("/api/_platform/apps/{name}", get_app)
    r.add_delete("/api/_platform/apps/{name}", delete_app)
    r.add_get("/api/_platform/ai/status", ai_status)
