"""Webhooks on a transactional outbox: registrations, outbox rows, outbound HTTP, the dispatcher.

Public API for other capabilities: `enqueue_direct` (a state-machine or workflow `webhook` action
delivered like a registered webhook: logged, retried, signed, SSRF-guarded), `WEBHOOKS` (the
snapshot part).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from rocketd.capabilities.webhooks import routes
from rocketd.capabilities.webhooks.admin import KINDS, load_webhook_book
from rocketd.capabilities.webhooks.dispatcher import start_webhooks, sweep_webhooks
from rocketd.capabilities.webhooks.model import WebhookBook
from rocketd.capabilities.webhooks.outbox import OUTBOUND, Outbound, enqueue_direct
from rocketd.capabilities.webhooks.retention import RETENTION_INTERVAL, expire_logs
from rocketd.capabilities.webhooks.stages import STAGES, WEBHOOKS
from rocketd.extensions import Capability, SnapshotPart, StartContext
from rocketd.metadata.registry import Registry


async def _load(conn: AsyncConnection[Any], registry: Registry) -> WebhookBook:
    return await load_webhook_book(conn)


async def start(ctx: StartContext) -> None:
    """Every instance needs the outbound policy (sync hooks run in the request that writes);
    only instances with background work run the dispatcher and its sweep."""
    outbound = Outbound(ctx.settings.webhooks, ctx.settings.outbound.allow_networks)
    ctx.provide(OUTBOUND, outbound)
    ctx.on_stop(outbound.close)
    if ctx.scheduler is None:
        return
    dispatcher = await start_webhooks(ctx.settings, ctx.directory, ctx.supervisor, ctx.services)
    ctx.scheduler.add_job(
        "webhook-sweep",
        ctx.settings.webhooks.sweep_interval,
        sweep_webhooks(ctx.directory, dispatcher),
    )
    days = ctx.settings.webhooks.log_retention_days
    if days > 0:
        ctx.scheduler.add_job(
            "webhook-logs-retention", RETENTION_INTERVAL, expire_logs(ctx.directory, days)
        )


CAPABILITY = Capability(
    name="webhooks",
    kinds=KINDS,
    snapshot_parts=(SnapshotPart(WEBHOOKS, _load, lambda book: book.problems),),
    stages=STAGES,
    add_routes=routes.add_routes,
    start=start,
)

__all__ = ["CAPABILITY", "WEBHOOKS", "enqueue_direct"]
