"""`/api/_platform/*`: platform login, refresh, logout, the caller's own account (me, password,
email), and app management."""

from __future__ import annotations

from aiohttp import web

from rocketd.errors import ErrorDetail, ValidationFailed
from rocketd.http.bodies import INVALID_REQUEST_BODY, read_strict_object
from rocketd.http.keys import SERVICES
from rocketd.http.login import PLATFORM_SCOPE, log_in, throttled
from rocketd.http.policy import platform, principal_of, public
from rocketd.http.responses import data, message
from rocketd.platform import account, apps

AUTH_TOKEN_KEYS = ("refresh_token",)
APP_CREATE_KEYS = ("name", "display_name", "db_driver")
# `refresh_token` (optional): the caller's own session, kept when the password changes.
PASSWORD_KEYS = ("current_password", "new_password", "refresh_token")
EMAIL_KEYS = ("current_password", "email")


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
async def me(request: web.Request) -> web.StreamResponse:
    pool = request.app[SERVICES].management_pool
    return data((await account.get_user(pool, principal_of(request).user_id)).to_json())


def _require(body: dict[str, object], keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if not body.get(key)]
    if missing:
        raise ValidationFailed(
            "; ".join(f"{key} is required" for key in missing),
            [ErrorDetail(f"{key} is required", key, "required") for key in missing],
        )


async def _caller_with_password(
    request: web.Request, body: dict[str, object]
) -> account.PlatformUser:
    """The calling platform user, once `current_password` is proved (a throttled attempt)."""
    services = request.app[SERVICES]
    user = await account.get_user(services.management_pool, principal_of(request).user_id)
    async with throttled(request, PLATFORM_SCOPE, user.email):
        await account.check_current_password(
            services.management_pool,
            user,
            body["current_password"],
            services.settings.auth.bcrypt_cost,
        )
    return user


@platform
async def change_password(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(request, PASSWORD_KEYS, INVALID_REQUEST_BODY, PASSWORD_KEYS)
    _require(body, ("current_password", "new_password"))
    services = request.app[SERVICES]
    auth = services.settings.auth
    caller = await account.get_user(services.management_pool, principal_of(request).user_id)
    # The policy first: a weak new password is no guess at the current one.
    account.check_new_password(
        body["new_password"], auth.password_min_length, caller.email, "new_password"
    )
    user = await _caller_with_password(request, body)
    await account.set_password(
        services.management_pool,
        user,
        body["new_password"],
        auth.bcrypt_cost,
        keep_refresh_token=body.get("refresh_token"),
    )
    return message("Password changed")


@platform
async def change_email(request: web.Request) -> web.StreamResponse:
    body = await read_strict_object(request, EMAIL_KEYS, INVALID_REQUEST_BODY, EMAIL_KEYS)
    _require(body, EMAIL_KEYS)
    user = await _caller_with_password(request, body)
    pool = request.app[SERVICES].management_pool
    return data((await account.set_email(pool, user, body["email"])).to_json())


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
    r.add_get("/api/_platform/auth/me", me)
    r.add_put("/api/_platform/auth/password", change_password)
    r.add_put("/api/_platform/auth/email", change_email)
    r.add_get("/api/_platform/apps", list_apps)
    r.add_post("/api/_platform/apps", create_app)
    r.add_get("/api/_platform/apps/{name}", get_app)
    r.add_delete("/api/_platform/apps/{name}", delete_app)
    r.add_get("/api/_platform/ai/status", ai_status)
