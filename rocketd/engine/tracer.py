"""Where requests get their trace: the `TRACER` service, provided by the events capability.

The HTTP layer asks it once per app request, after the app is resolved; without the service
(the capability not installed, or `instrumentation.enabled: false`) nothing is traced and the
request pays one dictionary lookup. Background work that a traced request caused (an outbox
row, a workflow instance: both carry the trace id and the span that created them) continues
that trace with `continue_trace`, in whichever process runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from psycopg_pool import AsyncConnectionPool

from rocketd.engine.pipeline import AppContext, ServiceKey
from rocketd.tracing import (
    NO_SPAN,
    AnySpan,
    ContinuedTrace,
    Trace,
    as_uuid,
    start_root,
    start_span,
    tracing_active,
)


class Tracer(Protocol):
    def begin(self, app: str, pool: AsyncConnectionPool[Any], trace_id: str) -> Trace | None:
        """A new trace of `app` with this id, or None when the trace is not sampled."""
        ...


TRACER: Final[ServiceKey[Tracer]] = ServiceKey("tracer")

# (app or "", route pattern, method, status, seconds): every answered request, when a capability
# measures them (the events capability's /metrics).
RequestObserver = Callable[[str, str, str, int, float], None]
REQUEST_OBSERVER: Final[ServiceKey[RequestObserver]] = ServiceKey("request_observer")


def continue_trace(
    services: Mapping[ServiceKey[Any], Any],
    app: str,
    pool: AsyncConnectionPool[Any],
    trace_id: Any,
    parent_span_id: Any,
    source: str,
    component: str,
    action: str,
    *,
    entity: str | None = None,
    record_id: Any = None,
    metadata: dict[str, Any] | None = None,
) -> AnySpan | ContinuedTrace:
    """A span for work a request caused: a child of the current span when a trace is running
    here (the request itself did the work), else the root of this process's part of the
    carried trace (when it is sampled), else `NO_SPAN`. Use it as `[async] with`."""
    if tracing_active():
        return start_span(
            source, component, action, entity=entity, record_id=record_id, metadata=metadata
        )
    tracer: Tracer | None = services.get(TRACER)
    carried = as_uuid(None if trace_id is None else str(trace_id))
    if tracer is None or carried is None:
        return NO_SPAN
    trace = tracer.begin(app, pool, carried)
    if trace is None:
        return NO_SPAN
    span = start_root(
        trace,
        source,
        component,
        action,
        parent_span_id=as_uuid(None if parent_span_id is None else str(parent_span_id)),
        metadata=metadata,
    )
    span.set_record(entity, record_id)
    return ContinuedTrace(span)


def trace_span(
    app: AppContext,
    trace_id: Any,
    parent_span_id: Any,
    source: str,
    component: str,
    action: str,
    **more: Any,
) -> AnySpan | ContinuedTrace:
    """`continue_trace` for an app context."""
    return continue_trace(
        app.services,
        app.name,
        app.pool,
        trace_id,
        parent_span_id,
        source,
        component,
        action,
        **more,
    )
