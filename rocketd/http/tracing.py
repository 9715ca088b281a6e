"""The request's trace: which id it carries (headers in), and its root span.

The trace id comes from `X-Trace-ID` when it is a UUID, else from a W3C `traceparent` (its
32 hex digits are a UUID too), else it is new; an id that is neither is replaced, never stored
(upstream stores it verbatim and a bad one breaks a whole batch insert). The id used is echoed in
`X-Trace-ID` on every answer.

The root span (`http` / `handler` / `request`) starts once the app is resolved: requests for an
unknown app, platform routes and `/health` are not traced. A traced request's rows reach the
event buffer together when its root span ends, with the caller known by then on every row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from rocketd.errors import ApiError
from rocketd.http.keys import APP_ACTOR, PRINCIPAL
from rocketd.logging import set_request_log
from rocketd.tracing import Trace, error_text, start_root

TRACE_HEADER: Final = "X-Trace-ID"
# version 00: trace id (32 hex, not all zero), parent span id (16 hex), flags (2 hex)
_TRACEPARENT: Final = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_MAX_TRACESTATE: Final = 512


def trace_id_from(headers: Mapping[str, str]) -> str:
    """The trace id a request asks for (`X-Trace-ID`, else `traceparent`), or a new one."""
    incoming = headers.get(TRACE_HEADER)
    if incoming:
        try:
            return str(uuid.UUID(incoming))
        except ValueError:
            pass  # replaced, never stored (upstream-gaps C34)
    parent = remote_parent(headers)
    if parent is not None:
        return parent[0]
    return str(uuid.uuid4())


def remote_parent(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(trace id as a UUID, parent span id) of a valid W3C `traceparent`, else None."""
    value = headers.get("traceparent")
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return str(uuid.UUID(match.group(1))), match.group(2)


def route_family(request: web.Request) -> str:
    """The matched route's pattern (`/api/{app}/{entity}/{id}`), never the concrete path, so
    metric labels stay few whatever clients send; `unmatched` for a 404/405 without a route."""
    info = request.match_info
    if getattr(info, "http_exception", None) is not None:
        return "unmatched"
    resource = info.route.resource
    return "unmatched" if resource is None else resource.canonical


def app_label(request: web.Request) -> str:
    """The app of a request that resolved one (never a made-up name from a 404)."""
    return request.match_info.get("app", "") if APP_ACTOR in request else ""


def _root_metadata(request: web.Request, trace_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"method": request.method, "path": request.path}
    parent = remote_parent(request.headers)
    if parent is not None and parent[0] == trace_id:
        metadata["remote_parent_span_id"] = parent[1]
        state = request.headers.get("tracestate")
        if state:
            metadata["tracestate"] = state[:_MAX_TRACESTATE]
    return metadata


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def traced_request(
    trace: Trace,
    request: web.Request,
    call: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]],
    handler: Handler,
) -> web.StreamResponse:
    """Run `call(request, handler)` (authentication, then the handler) inside the request's root
    span."""
    span = start_root(
        trace, "http", "handler", "request", metadata=_root_metadata(request, trace.trace_id)
    )
    set_request_log(span_id=span.span_id)
    status = 500
    try:
        with span:
            try:
                response = await call(request, handler)
                status = response.status
                return response
            except ApiError as err:
                status = err.status
                span.metadata["error"] = error_text(err)
                raise
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                span.metadata["status_code"] = status
                if status >= 400:
                    span.status = "error"
                principal = request.get(PRINCIPAL)
                if principal is not None:
                    trace.set_user(principal.user_id)
                    span.metadata["user_id"] = principal.user_id
    finally:
        trace.close()
