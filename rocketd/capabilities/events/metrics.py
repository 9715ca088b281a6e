"""`/metrics` in the Prometheus text format (`prometheus-client`), off unless `metrics.enabled`.

What is measured:

| metric | type | labels |
|---|---|---|
| `rocketd_http_requests_total` | counter | app, route (the route pattern), method, status |
| `rocketd_http_request_duration_seconds` | histogram | app, route, method |
| `rocketd_app_pool_connections` | gauge | app, state (`in_use`, `size`) |
| `rocketd_webhook_outbox_backlog` | gauge | app: deliveries pending or retrying |
| `rocketd_workflow_backlog` | gauge | app: running instances with a step to run |
| `rocketd_event_buffer_depth` | gauge | events waiting in memory |
| `rocketd_events_dropped_total`, `..._written_total`, `..._failed_total` | counter | |
| `rocketd_actor_restarts_total` | counter | actor |

Every value lives in a prometheus-client metric (the live ones are copied in by `refresh`, at
each scrape and every few seconds), never only in a collector callback: with
`PROMETHEUS_MULTIPROC_DIR` set, prometheus-client writes them to per-process files, and one scrape
of any worker aggregates every process of a `--workers` deployment (gauges as `livesum`/`max`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from rocketd.actors.base import Actor
from rocketd.actors.directory import AppDirectory
from rocketd.actors.supervisor import Supervisor
from rocketd.capabilities.events.flusher import EventFlusher
from rocketd.engine.pipeline import ServiceKey
from rocketd.logging import get_logger

log = get_logger("rocketd.metrics")

METRICS: Final[ServiceKey[Metrics]] = ServiceKey("metrics")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_SECONDS: Final = 5.0
BACKLOG_TIMEOUT: Final = 2.0
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTBOX_BACKLOG: Final = "select count(*) from _webhook_logs where status in ('pending', 'retrying')"
WORKFLOW_BACKLOG: Final = (
    "select count(*) from _workflow_instances where status = 'running' and not waiting"
)


class Metrics:
    def __init__(
        self, directory: AppDirectory, supervisor: Supervisor, flusher: EventFlusher | None
    ) -> None:
        self.directory = directory
        self.supervisor = supervisor
        self.flusher = flusher
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "rocketd_http_requests",
            "HTTP requests answered",
            ["app", "route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "rocketd_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["app", "route", "method"],
            buckets=BUCKETS,
            registry=r,
        )
        self.pool = Gauge(
            "rocketd_app_pool_connections",
            "Connections of each app's pool",
            ["app", "state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.outbox = Gauge(
            "rocketd_webhook_outbox_backlog",
            "Webhook deliveries pending or retrying",
            ["app"],
            registry=r,
            multiprocess_mode="max",
        )
        self.workflows = Gauge(
            "rocketd_workflow_backlog",
            "Running workflow instances with a step to run",
            ["app"],
            registry=r,
            multiprocess_mode="max",
        )
        self.buffer = Gauge(
            "rocketd_event_buffer_depth",
            "Events waiting in memory for the flusher",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.dropped = Counter("rocketd_events_dropped", "Events dropped: buffer full", registry=r)
        self.written = Counter("rocketd_events_written", "Events written to _events", registry=r)
        self.failed = Counter(
            "rocketd_events_failed", "Events lost with a failed flush", registry=r
        )
        self.restarts = Counter(
            "rocketd_actor_restarts", "Actor restarts after a crash", ["actor"], registry=r
        )
        self._seen: dict[str, int] = {}

    def observe(self, app: str, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request (the HTTP layer's `REQUEST_OBSERVER`)."""
        self.requests.labels(app, route, method, str(status)).inc()
        self.latency.labels(app, route, method).observe(seconds)

    def _advance(self, key: str, counter: Any, value: int) -> None:
        """Bring a counter up to a cumulative value kept elsewhere."""
        delta = value - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
        self._seen[key] = value

    async def refresh(self) -> None:
        """Copy the live values in: pools, backlogs, the event buffer, restarts."""
        flusher = self.flusher
        if flusher is not None:
            self.buffer.set(flusher.buffer.size)
            self._advance("dropped", self.dropped, flusher.buffer.dropped)
            self._advance("written", self.written, flusher.written)
            self._advance("failed", self.failed, flusher.failed)
        for name, count in self.supervisor.restart_counts().items():
            self._advance(f"restarts:{name}", self.restarts.labels(name), count)
        self.pool.clear()
        self.outbox.clear()
        self.workflows.clear()
        for actor in list(self.directory.actors.values()):
            if not actor.running:
                continue
            stats = actor.pool.get_stats()
            size = stats.get("pool_size", 0)
            self.pool.labels(actor.app_name, "size").set(size)
            self.pool.labels(actor.app_name, "in_use").set(size - stats.get("pool_available", 0))
            try:
                outbox, running = await asyncio.wait_for(_backlogs(actor.pool), BACKLOG_TIMEOUT)
            except Exception as exc:
                log.warning("backlog not measured", app=actor.app_name, error=type(exc).__name__)
                continue
            self.outbox.labels(actor.app_name).set(outbox)
            self.workflows.labels(actor.app_name).set(running)

    async def render(self) -> bytes:
        await self.refresh()
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`GET /metrics` (public: serve it on `metrics.listen`, a private address)."""
        body = await self.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _backlogs(pool: Any) -> tuple[int, int]:
    async with pool.connection() as conn:
        outbox = await (await conn.execute(OUTBOX_BACKLOG)).fetchone()
        running = await (await conn.execute(WORKFLOW_BACKLOG)).fetchone()
    return int(outbox[0]), int(running[0])


class MetricsRefresher(Actor):
    """Refreshes the live values every few seconds, so a scrape of another worker (multiprocess
    mode) sees this process's current pools and buffer too."""

    def __init__(self, metrics: Metrics, interval: float = REFRESH_SECONDS) -> None:
        super().__init__("metrics-refresher")
        self.metrics = metrics
        self.interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.metrics.refresh()
            except Exception:
                log.exception("metrics refresh failed")


class MetricsListener:
    """`/metrics` on its own address (`metrics.listen`), away from the public API port."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.metrics = metrics
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        # reuse_port: every worker of `serve --workers N` listens here too (any one answers
        # for all of them, see PROMETHEUS_MULTIPROC_DIR).
        await web.TCPSite(self.runner, self.host, self.port, reuse_port=True).start()
        log.info("metrics listening", address=f"http://{self.host}:{self.port}/metrics")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
