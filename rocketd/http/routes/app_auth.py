"""`/api/{app}/auth/*` (login, refresh, logout) and the app-level AI routes (not configured).

`auth/accept-invite` belongs to the users capability (`capabilities.users.routes`)."""

from __future__ import annotations

from aiohttp import web

from rocketd.errors import NotConfigured
from rocketd.http.bodies import INVALID_REQUEST_BODY, read_strict_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.login import app_scope, log_in
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, public
from rocketd.http.responses import data, message
from rocketd.http.routes.platform import AUTH_TOKEN_KEYS, ai_status_body
from rocketd.tracing import traced


@public
@traced("auth", "login", "auth.login")
async def login(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return await log_in(request, actor.accounts, app_scope(actor.app_name))


@public
async def refresh(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(request, AUTH_TOKEN_KEYS, INVALID_REQUEST_BODY, AUTH_TOKEN_KEYS)
    pair = await request[APP_ACTOR].accounts.refresh(body.get("refresh_token"))
    return data(pair.to_json())


@public
async def logout(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(request, AUTH_TOKEN_KEYS, INVALID_REQUEST_BODY, AUTH_TOKEN_KEYS)
    await request[APP_ACTOR].accounts.logout(body.get("refresh_token"))
    return message("Logged out")


@app_admin
async def ai_status(request: web.Request) -> web.StreamResponse:
    return data(ai_status_body(request))


@app_admin
async def ai_generate(request: web.Request) -> web.StreamResponse:
    """501 `NOT_CONFIGURED` (spec): rocketd has no AI provider. Answered before the body is
    read, so a client learns the one thing it can act on."""
    if ai_status_body(request)["configured"]:
        raise NotConfigured(
            "AI schema generation is not available: this release of rocketd has no AI provider"
        )
    raise NotConfigured(
        "AI schema generation is not configured: set ai.base_url, ai.api_key and ai.model"
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(APP_PATH + "/auth/login", login)
    r.add_post(APP_PATH + "/auth/refresh", refresh)
    r.add_post(APP_PATH + "/auth/logout", logout)
    r.add_get(APP_PATH + "/_admin/ai/status", ai_status)
    r.add_post(APP_PATH + "/_admin/ai/generate", ai_generate)
