"""`/api/{app}/auth/*` (login, refresh, logout, accept-invite) and the app-level AI status stub."""

from __future__ import annotations

from aiohttp import web

from rocketd.auth import invites
from rocketd.http.auth import app_admin, public
from rocketd.http.bodies import INVALID_REQUEST_BODY, read_json_object, read_strict_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.login import app_scope, log_in, throttled
from rocketd.http.paths import APP_PATH
from rocketd.http.responses import data, message
from rocketd.http.routes_admin_users import password_policy
from rocketd.http.routes_platform import AUTH_TOKEN_KEYS, ai_status_body


@public
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


@public
async def accept_invite(request: web.Request) -> web.StreamResponse:
    """201 with a token pair and the new user: the invitee is logged in (spec). Throttled per
    client address: each refused token counts as a failed attempt."""
    actor = request[APP_ACTOR]
    body = await read_json_object(request)  # not JSON: 400 `Invalid JSON body` (spec)
    policy = password_policy(request)
    token, password = invites.parse_accept_body(body, policy)
    async with throttled(request, app_scope(actor.app_name)):
        user = await invites.accept_invite(actor.pool, token, password, policy)
    pair = await actor.accounts.issue_for(user.id, list(user.roles))
    return data({**pair.to_json(), "user": user.to_json()}, 201)


@app_admin
async def ai_status(request: web.Request) -> web.StreamResponse:
    return data(ai_status_body(request))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(APP_PATH + "/auth/login", login)
    r.add_post(APP_PATH + "/auth/refresh", refresh)
    r.add_post(APP_PATH + "/auth/logout", logout)
    r.add_post(APP_PATH + "/auth/accept-invite", accept_invite)
    r.add_get(APP_PATH + "/_admin/ai/status", ai_status)
