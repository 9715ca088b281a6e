"""The workflows' write stage: an API write that moves a trigger field to its `to` value starts
an instance of each matching workflow, inserted in the write's transaction (it commits with the
write or not at all) and run after the commit by the WorkflowRunner.

API writes only: a workflow's own writes (system writes) never start workflows, so a workflow
cannot trigger itself or another (upstream-gaps C15). Nested children do not start workflows.
"""

from __future__ import annotations

from typing import Final

from rocketd.capabilities.workflows.book import WORKFLOWS
from rocketd.capabilities.workflows.instances import start_instances
from rocketd.engine.snapshot import AppSnapshot
from rocketd.extensions import Phase, Stage, WriteContext, WriteMode
from rocketd.metadata.model import Entity


def _triggered(snapshot: AppSnapshot, entity: Entity) -> bool:
    return bool(snapshot[WORKFLOWS].for_entity(entity.name))


async def start(ctx: WriteContext) -> None:
    if ctx.record is None:  # pragma: no cover - AFTER_WRITE has the record
        return
    await start_instances(ctx.connection(), ctx.snapshot, ctx.entity, ctx.record, ctx.stored)


STAGES: Final = (
    Stage(
        "workflows.start",
        Phase.AFTER_WRITE,
        40,
        start,
        applies=_triggered,
        modes=WriteMode.API,
    ),
)
