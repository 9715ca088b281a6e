"""The middlewares every request passes, outermost first:

1. `trace_middleware`   - accepts a UUID `X-Trace-ID` or makes one, echoes it (on errors too),
                          binds log context, logs the request; it runs `error_middleware` inside:
   `error_middleware`   - any failure becomes the contract's error body; a 500 never leaks details;
                          a database that does not answer is a 503 (naming the app, if any).
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

import psycopg
from aiohttp import web
from psycopg import errors as pg_errors
from psycopg_pool import PoolClosed, PoolTimeout

from rocketd.auth.principal import Principal
from rocketd.engine.tracer import TRACER
from rocketd.errors import (
    ApiError,
    AppNotFound,
    InternalError,
    InvalidPayload,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from rocketd.http.keys import (
    APP_ACTOR,
    OBSERVE_REQUEST,
    PLATFORM_USERS,
    PRINCIPAL,
    SERVICES,
    TRACE_ID,
)
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
from rocketd.http.tracing import (
    TRACE_HEADER,
    app_label,
    route_family,
    trace_id_from,
    traced_request,
)
from rocketd.logging import enabled as logging_enabled
from rocketd.logging import get_logger, set_request_log, start_request_log
from rocketd.tracing import set_trace_user, start_span

log = get_logger("rocketd.http")

# Liveness/readiness answers (and scrapes) stay exactly as load balancers expect (no trace header, no logging).
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


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
    except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
        if isinstance(exc, pg_errors.TransactionRollback):  # a deadlock: not this
            log.exception("unhandled error", method=request.method, path=request.path)
            return _error_response(InternalError())
        return _error_response(_database_unavailable(request, exc))
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return _error_response(InternalError())


def _database_unavailable(request: web.Request, exc: Exception) -> ApiError:
    """A database that does not answer (unreachable, dropped, out of connections, too slow to
    hand out a connection): 503 for this request, naming the app when it is an app's, so one
    failing app database costs that app only. The class name is logged, never the message
    (it may hold a DSN)."""
    actor = request.get(APP_ACTOR)
    app = actor.app_name if actor is not None else None
    log.warning("database unavailable", app=app, path=request.path, problem=type(exc).__name__)
    what = f"App {app}" if app is not None else "The service"
    return ServiceUnavailable(
        f"{what} is unavailable right now: its database does not answer; retry shortly",
        headers={"Retry-After": "1"},
    )


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _QUIET_PATHS:
        return await error_middleware(request, handler)
    trace_id = trace_id_from(request.headers)
    request[TRACE_ID] = trace_id
    # Every line logged during the request carries these three (filled in as they become known).
    start_request_log(trace_id=trace_id, app=None, user_id=None)
    started = time.perf_counter()
    response = await error_middleware(request, handler)
    response.headers[TRACE_HEADER] = trace_id
    seconds = time.perf_counter() - started
    if logging_enabled(logging.INFO):
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round(seconds * 1000, 2),
        )
    observe = request.app.get(OBSERVE_REQUEST)
    if observe is not None:
        observe(app_label(request), route_family(request), request.method, response.status, seconds)
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
        set_request_log(app=app_name)
        tracer = actor.context.services.get(TRACER)
        if tracer is not None:
            trace = tracer.begin(app_name, actor.pool, request[TRACE_ID])
            if trace is not None:
                return await traced_request(trace, request, _authorized, handler)
    return await _authorized(request, handler)


async def _authorized(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The route's policy applied, then the handler."""
    services = request.app[SERVICES]
    policy = policy_of(request.match_info.handler)
    if policy is Policy.PLATFORM:
        principal = authenticate_platform(request, services.platform_secret)
        principal = await confirm_user(principal, request.app[PLATFORM_USERS])
    elif policy in (Policy.APP_TOKEN, Policy.APP_ADMIN):
        principal = await _app_principal(request, policy)
    else:
        return await handler(request)
    request[PRINCIPAL] = principal
    set_request_log(user_id=principal.user_id)
    return await handler(request)


async def _app_principal(request: web.Request, policy: Policy) -> Principal:
    """The app route's caller: token, current user state, admin role (span `auth.validate`, or
    `auth.denied` when refused)."""
    services = request.app[SERVICES]
    actor = request[APP_ACTOR]
    with start_span("auth", "middleware", "auth.validate") as span:
        try:
            principal = authenticate_app(request, actor.jwt_secret, services.platform_secret)
            users = request.app[PLATFORM_USERS] if principal.via_platform else actor.users
            principal = await confirm_user(principal, users)
            if policy is Policy.APP_ADMIN:
                require_admin(principal)
            set_trace_user(principal.user_id)  # every row recorded from now on carries it
        except ApiError:
            span.rename("auth.denied")
            raise
    return principal
