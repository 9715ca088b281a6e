"""The middlewares every request passes, outermost first:

1. `trace_middleware`   - accepts a UUID `X-Trace-ID` or makes one, echoes it (on errors too),
                          binds log context, logs the request; it runs `error_middleware` inside:
   `error_middleware`   - any failure becomes the contract's error body; a 500 never leaks details.
2. `body_limit_middleware` - refuses a declared body above `server.max_body_size` before reading
                          (a body that lies about its size is stopped by aiohttp's reader: 413 too).
                          File uploads are exempt: they stream, limited by `storage.max_file_size`.
3. `auth_middleware`    - resolves `{app}` (404 `APP_NOT_FOUND`), then applies the route's policy:
                          token signature and claims, then the user's current state (exists,
                          active, roles still held: `auth.confirm_user`), then the admin check.
"""

from __future__ import annotations

import logging
import time
import uuid

import structlog
from aiohttp import web

from rocketd.errors import (
    ApiError,
    AppNotFound,
    InternalError,
    InvalidPayload,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from rocketd.http.keys import APP_ACTOR, PLATFORM_USERS, PRINCIPAL, SERVICES, TRACE_ID
from rocketd.http.policy import (
    Handler,
    Policy,
    authenticate_app,
    authenticate_platform,
    confirm_user,
    policy_of,
    require_admin,
)
from rocketd.http.responses import json_body
from rocketd.logging import enabled as logging_enabled
from rocketd.logging import get_logger

log = get_logger("rocketd.http")

TRACE_HEADER = "X-Trace-ID"
# Liveness/readiness answers stay exactly as load balancers expect (no trace header, no logging).
_QUIET_PATHS = frozenset({"/health", "/ready"})


def _error_response(err: ApiError) -> web.Response:
    return json_body(err.to_json(), err.status, headers=err.headers or None)


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 404:
        return NotFound(f"Route not found: {request.method} {request.path}")
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return MethodNotAllowed(
            f"Method {request.method} not allowed on {request.path}",
            headers={"Allow": allow} if allow else None,
        )
    if exc.status == 413:
        limit = request.app[SERVICES].settings.server.max_body_size
        return PayloadTooLarge(f"Request body too large: the limit is {limit} bytes")
    if exc.status == 400:
        return InvalidPayload(exc.reason or "Bad request")
    err = ApiError(exc.reason or "Request failed", status=exc.status)
    err.code = "HTTP_ERROR"
    return err


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return _error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_response(_from_http_exception(exc, request))
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return _error_response(InternalError())


def _trace_id(request: web.Request) -> str:
    incoming = request.headers.get(TRACE_HEADER, "")
    try:
        return str(uuid.UUID(incoming)) if incoming else str(uuid.uuid4())
    except ValueError:
        return str(uuid.uuid4())  # upstream-gaps C34: only UUIDs are accepted


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _QUIET_PATHS:
        return await error_middleware(request, handler)
    trace_id = _trace_id(request)
    request[TRACE_ID] = trace_id
    structlog.contextvars.clear_contextvars()
    # Every line logged during the request carries these three (filled in as they become known).
    structlog.contextvars.bind_contextvars(trace_id=trace_id, app=None, user_id=None)
    started = time.perf_counter()
    response = await error_middleware(request, handler)
    response.headers[TRACE_HEADER] = trace_id
    if logging_enabled(logging.INFO):
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    return response


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if getattr(request.match_info.handler, "__rocketd_streams_body__", False):
        return await handler(request)  # limited by the handler while streaming (file uploads)
    declared = request.content_length
    limit = request.app[SERVICES].settings.server.max_body_size
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"Request body too large: the limit is {limit} bytes")
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    services = request.app[SERVICES]
    app_name = request.match_info.get("app")
    if app_name is not None:
        actor = await services.directory.resolve(app_name)
        if actor is None:
            raise AppNotFound(f"App not found: {app_name}")
        request[APP_ACTOR] = actor
        structlog.contextvars.bind_contextvars(app=app_name)
    policy = policy_of(request.match_info.handler)
    if policy is Policy.PLATFORM:
        principal = authenticate_platform(request, services.platform_secret)
        principal = await confirm_user(principal, request.app[PLATFORM_USERS])
    elif policy in (Policy.APP_TOKEN, Policy.APP_ADMIN):
        actor = request[APP_ACTOR]
        principal = authenticate_app(request, actor.jwt_secret, services.platform_secret)
        users = request.app[PLATFORM_USERS] if principal.via_platform else actor.users
        principal = await confirm_user(principal, users)
        if policy is Policy.APP_ADMIN:
            require_admin(principal)
    else:
        return await handler(request)
    request[PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    return await handler(request)
