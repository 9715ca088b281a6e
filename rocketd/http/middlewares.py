"""The one middleware every request passes (`request_middleware`), in this order:

1. the trace: accepts a UUID `X-Trace-ID` or makes one, echoes it (on errors too), starts the
   request's log context, and logs the request when it is answered;
2. errors: any failure below becomes the contract's error body (`error_answer`); a 500 never
   leaks details; a database that does not answer is a 503 (naming the app, if any);
3. the body limit: a declared body above `server.max_body_size` is refused before it is read (a
   body that lies about its size is stopped by aiohttp's reader: 413 too). File uploads are
   exempt: they stream, limited by `storage.max_file_size`;
4. the app and the caller: resolves `{app}` (404 `APP_NOT_FOUND`), starts the request's trace
   when it is sampled, then applies the route's policy: token signature and claims, then the
   user's current state (exists, active, roles still held: `auth.confirm_user`), then the admin
   check.

`/health`, `/ready` and `/metrics` skip the first step. One middleware rather than one per step:
each aiohttp middleware is another coroutine every request passes through, on every resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

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


def error_answer(request: web.Request, exc: Exception) -> web.Response:
    """The contract's answer to a request that failed with `exc` (call it in the `except`
    block: an unexpected error is logged with its traceback). A redirect is raised again."""
    if isinstance(exc, ApiError):
        return _error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _error_response(_from_http_exception(exc, request))
    if isinstance(exc, psycopg.OperationalError | PoolTimeout | PoolClosed) and not isinstance(
        exc,
        pg_errors.TransactionRollback,  # a deadlock: not a database that does not answer
    ):
        return _error_response(_database_unavailable(request, exc))
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
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _QUIET_PATHS:
        try:
            return await _admitted(request, handler)
        except Exception as exc:
            return error_answer(request, exc)
    trace_id = trace_id_from(request.headers)
    request[TRACE_ID] = trace_id
    # Every line logged during the request carries these three (filled in as they become known).
    start_request_log(trace_id=trace_id, app=None, user_id=None)
    started = time.perf_counter()
    try:
        response = await _admitted(request, handler)
    except Exception as exc:
        response = error_answer(request, exc)
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


def _admitted(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Steps 3 and 4: the body limit, the app, the trace, the caller, then the handler (a plain
    function returning the awaitable of the step that runs the rest: no coroutine of its own)."""
    services = request.app[SERVICES]
    if not getattr(request.match_info.handler, "__rocketd_streams_body__", False):
        declared = request.content_length
        limit = services.settings.server.max_body_size
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"Request body too large: the limit is {limit} bytes")
    if request.match_info.get("app") is None:
        return _authorized(request, handler)
    return _in_app(request, handler)


async def _in_app(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An app's route: the app resolved (404 when unknown), traced when sampled."""
    app_name = request.match_info["app"]
    actor = await request.app[SERVICES].directory.resolve(app_name)
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
