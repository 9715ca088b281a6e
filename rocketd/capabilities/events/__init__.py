"""Instrumentation and events: spans through `contextvars` (`rocketd.tracing`), the `_events`
table, the EventFlusher actor, the business-event API and trace queries.

With `instrumentation.enabled` off nothing is provided: no `TRACER` service (the HTTP layer then
traces nothing), no business-event sink (the kernel logs them), no flusher; the routes still
answer (`POST` stores nothing, reads return what is stored).
"""

from __future__ import annotations

import asyncio

from rocketd.capabilities.events import routes
from rocketd.capabilities.events.flusher import EventFlusher
from rocketd.capabilities.events.metrics import (
    METRICS,
    Metrics,
    MetricsListener,
    MetricsRefresher,
)
from rocketd.capabilities.events.observe import business_sink, observe_stage
from rocketd.capabilities.events.otlp import OtlpExporter
from rocketd.capabilities.events.retention import RETENTION_INTERVAL, expire_events
from rocketd.capabilities.events.schema import EVENTS_PLAN
from rocketd.capabilities.events.tracer import AppTracer
from rocketd.engine.business_events import BUSINESS_EVENTS
from rocketd.engine.tracer import REQUEST_OBSERVER, TRACER
from rocketd.extensions import Capability, StartContext


async def start(ctx: StartContext) -> None:
    """Every instance traces its own requests: the flusher runs whether or not this instance
    does background work. Metrics, when enabled, are per process too."""
    flusher = await _start_events(ctx) if ctx.settings.instrumentation.enabled else None
    if ctx.settings.metrics.enabled:
        await _start_metrics(ctx, flusher)


async def _start_events(ctx: StartContext) -> EventFlusher:
    settings = ctx.settings.instrumentation
    flusher = EventFlusher(
        capacity=settings.max_buffered,
        batch_size=settings.buffer_size,
        interval=settings.flush_interval_ms / 1000.0,
        # its connections close like the app pools' (0 there: kept open)
        idle_seconds=ctx.settings.app_pool_idle_seconds or float("inf"),
    )
    exporter = OtlpExporter(settings.otlp_endpoint) if settings.otlp_endpoint else None
    if exporter is not None:
        ctx.on_stop(lambda: asyncio.to_thread(exporter.shutdown))
    tracer = AppTracer(flusher.buffer, settings.sampling_rate, exporter)
    ctx.provide(TRACER, tracer)
    ctx.provide(BUSINESS_EVENTS, business_sink(tracer))
    await ctx.supervisor.add(flusher)
    if ctx.scheduler is not None:
        ctx.scheduler.add_job(
            "events-retention",
            RETENTION_INTERVAL,
            expire_events(ctx.directory, settings.retention_days),
        )
    return flusher


async def _start_metrics(ctx: StartContext, flusher: EventFlusher | None) -> None:
    metrics = Metrics(ctx.directory, ctx.supervisor, flusher)
    ctx.provide(METRICS, metrics)
    ctx.provide(REQUEST_OBSERVER, metrics.observe)
    await ctx.supervisor.add(MetricsRefresher(metrics))
    if ctx.settings.metrics.listen:
        listener = MetricsListener(metrics, ctx.settings.metrics.listen)
        await listener.start()
        ctx.on_stop(listener.stop)


CAPABILITY = Capability(
    name="events",
    stage_observer=observe_stage,
    add_routes=routes.add_routes,
    start=start,
    schema=EVENTS_PLAN,
)

__all__ = ["CAPABILITY"]
