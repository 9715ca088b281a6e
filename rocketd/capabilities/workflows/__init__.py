"""Durable workflows: definitions (`_workflows`), instances, the runner, approvals, timeouts.

Public API for other capabilities: `WORKFLOWS` (the snapshot part).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from rocketd.capabilities.workflows import routes
from rocketd.capabilities.workflows.admin import KINDS, WorkflowBook, load_workflow_book
from rocketd.capabilities.workflows.book import WORKFLOWS
from rocketd.capabilities.workflows.runner import install
from rocketd.capabilities.workflows.stages import STAGES
from rocketd.extensions import Capability, SnapshotPart, StartContext
from rocketd.metadata.registry import Registry


async def _load(conn: AsyncConnection[Any], registry: Registry) -> WorkflowBook:
    return await load_workflow_book(conn, registry)


async def start(ctx: StartContext) -> None:
    if ctx.scheduler is None:
        return  # an API-only instance: approve/reject still advance in the request
    await install(
        ctx.supervisor,
        ctx.directory,
        ctx.scheduler,
        ctx.settings.workflow_tick_seconds,
        ctx.settings.workflow_retention_days,
    )


CAPABILITY = Capability(
    name="workflows",
    kinds=KINDS,
    snapshot_parts=(SnapshotPart(WORKFLOWS, _load, lambda book: book.problems),),
    stages=STAGES,
    add_routes=routes.add_routes,
    start=start,
)

__all__ = ["CAPABILITY", "WORKFLOWS"]
