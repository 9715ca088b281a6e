"""Instrumentation and events: spans through `contextvars` (`rocketd.tracing`), the `_events`
table, the EventFlusher actor, the business-event API and trace queries.

With `instrumentation.enabled` off nothing is provided: no `TRACER` service (the HTTP layer then
traces nothing), no business-event sink (the kernel logs them), no flusher; the routes still
answer (`POST` stores nothing, reads return what is stored).
"""

from __future__ import annotations

from rocketd.capabilities.events import routes
from rocketd.capabilities.events.flusher import EventFlusher
from rocketd.capabilities.events.observe import business_sink, observe_stage
from rocketd.capabilities.events.retention import RETENTION_INTERVAL, expire_events
from rocketd.capabilities.events.schema import EVENTS_PLAN
from rocketd.capabilities.events.tracer import AppTracer
from rocketd.engine.business_events import BUSINESS_EVENTS
from rocketd.engine.tracer import TRACER
from rocketd.extensions import Capability, StartContext


async def start(ctx: StartContext) -> None:
    """Every instance traces its own requests: the flusher runs whether or not this instance
    does background work."""
    settings = ctx.settings.instrumentation
    if not settings.enabled:
        return
    flusher = EventFlusher(
        capacity=settings.max_buffered,
        batch_size=settings.buffer_size,
        interval=settings.flush_interval_ms / 1000.0,
    )
    tracer = AppTracer(flusher.buffer, settings.sampling_rate)
    ctx.provide(TRACER, tracer)
    ctx.provide(BUSINESS_EVENTS, business_sink(tracer))
    await ctx.supervisor.add(flusher)
    if ctx.scheduler is not None:
        ctx.scheduler.add_job(
            "events-retention",
            RETENTION_INTERVAL,
            expire_events(ctx.directory, settings.retention_days),
        )


CAPABILITY = Capability(
    name="events",
    stage_observer=observe_stage,
    add_routes=routes.add_routes,
    start=start,
    schema=EVENTS_PLAN,
)

__all__ = ["CAPABILITY"]
