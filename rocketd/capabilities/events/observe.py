"""Spans from the kernel's hooks: one per write-pipeline stage (the stage observer), and the
business events the kernel announces (`send_event` actions) recorded in `_events`."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Final, cast

from rocketd.capabilities.events.tracer import AppTracer, sampled
from rocketd.engine.business_events import BusinessEvent
from rocketd.errors import Forbidden
from rocketd.extensions import AppContext, Stage, WriteContext
from rocketd.tracing import (
    BUSINESS,
    NO_SPAN,
    Span,
    Trace,
    emit_business_event,
    new_id,
    start_span,
    tracing_active,
)

# stage name prefix -> (source, component, action, action when it refuses with 403)
_STAGE_SPANS: Final[dict[str, tuple[str, str, str, str]]] = {
    # the checks themselves are `permission.check` spans (Access.grant); a stage refusing a row
    # by its conditions is `permission.denied`
    "permissions": ("auth", "permissions", "permission.stage", "permission.denied"),
    "rules": ("engine", "rules", "rules.evaluate", "rules.evaluate"),
    "state_machines": ("engine", "state_machine", "state.transition", "state.transition"),
    "webhooks": ("webhook", "dispatcher", "webhook.match", "webhook.match"),
    "workflows": ("workflow", "engine", "workflow.trigger", "workflow.trigger"),
    "files": ("storage", "file", "file.resolve", "file.resolve"),
}


def observe_stage(stage: Stage, ctx: WriteContext) -> AbstractContextManager[None]:
    """The stage observer: a span around each stage run while a request is traced."""
    if not tracing_active():
        return cast(AbstractContextManager[None], NO_SPAN)
    family = stage.name.partition(".")[0]
    names = _STAGE_SPANS.get(family)
    if names is None:
        names = ("engine", "pipeline", f"write.{stage.name}", f"write.{stage.name}")
    source, component, action, denied = names
    metadata: dict[str, Any] = {"stage": stage.name, "phase": stage.phase.value}
    if family == "permissions":
        metadata["action"] = ctx.action
    if ctx.path:
        metadata["path"] = ctx.path
    span = start_span(
        source, component, action, entity=ctx.entity.name, record_id=ctx.pk, metadata=metadata
    )
    return _StageSpan(cast(Span, span), denied)


class _StageSpan:
    """The span of one stage run, made current while the stage runs; a stage refusing with
    403 renames it (a plain context manager class: this runs for every stage of every traced
    write)."""

    __slots__ = ("denied", "span")

    def __init__(self, span: Span, denied: str) -> None:
        self.span = span
        self.denied = denied

    def __enter__(self) -> None:
        self.span.__enter__()

    def __exit__(self, kind: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
        span = self.span
        if isinstance(exc, Forbidden):
            span.rename(self.denied)
            span.metadata["result"] = "denied"
        span.__exit__(kind, exc, tb)


def business_sink(tracer: AppTracer) -> Any:
    """The `BUSINESS_EVENTS` service: a `send_event` inside a traced request joins its trace;
    one announced by background work joins the trace it carries, when that trace is sampled."""

    async def record(app: AppContext, event: BusinessEvent) -> None:
        metadata = dict(event.metadata)
        if emit_business_event(
            event.action, event.entity, event.record_id, metadata, component=event.source
        ):
            return
        if event.trace_id is None or not sampled(event.trace_id, tracer.sampling_rate):
            return
        trace = Trace(event.trace_id, lambda rows: tracer.deliver(app.name, app.pool, rows))
        trace.record(
            (
                event.trace_id,
                new_id(),
                None,
                BUSINESS,
                BUSINESS,
                event.source,
                event.action,
                event.entity,
                event.record_id,
                None,
                None,
                None,
                metadata,
                time.time_ns(),
            )
        )
        trace.close()

    return record
