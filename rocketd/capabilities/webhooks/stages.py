"""The webhooks' write stages (docs/webhooks.md).

- BEFORE_WRITE (API writes): sync `before_write` hooks are called inside the transaction; a
  refusal rolls the write back (422);
- AFTER_WRITE (API and system writes): an outbox row (`_webhook_logs`) for every matching async
  `after_write` hook, committed with the write and delivered after it by the dispatcher;
- AFTER_DELETE: sync `before_delete` hooks (the row is gone, a refusal rolls the delete back),
  then `after_delete` outbox rows.

Nested children do not fire webhooks (the request's record does); neither do imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from rocketd.capabilities.webhooks.model import EMPTY_WEBHOOKS, WebhookBook
from rocketd.capabilities.webhooks.outbox import OUTBOUND, call_sync, enqueue_async
from rocketd.engine.changes import compute_changes
from rocketd.engine.snapshot import AppSnapshot
from rocketd.extensions import Phase, SnapshotKey, Stage, WriteContext, WriteMode
from rocketd.metadata.model import Entity

WEBHOOKS: SnapshotKey[WebhookBook] = SnapshotKey("webhooks", EMPTY_WEBHOOKS)


def _hooked(event: str) -> Callable[[AppSnapshot, Entity], bool]:
    def applies(snapshot: AppSnapshot, entity: Entity) -> bool:
        return bool(snapshot[WEBHOOKS].matching(entity.name, event))

    return applies


async def sync_before_write(ctx: WriteContext) -> None:
    if ctx.plan is None:  # pragma: no cover - BEFORE_WRITE always has a plan
        return
    principal = ctx.caller.principal
    # what the write sets (before it runs): the payload of the planned values over the stored row
    written = (await ctx.write_state()).payload
    await call_sync(
        ctx.connection(),
        ctx.app.service(OUTBOUND),
        ctx.snapshot[WEBHOOKS],
        "before_write",
        ctx.entity.name,
        ctx.action,
        compute_changes(ctx.action, written, ctx.stored),
        principal,
    )


async def after_write(ctx: WriteContext) -> None:
    if ctx.record is None:  # pragma: no cover - AFTER_WRITE has the record
        return
    await enqueue_async(
        ctx.connection(),
        ctx.snapshot[WEBHOOKS],
        "after_write",
        ctx.entity.name,
        ctx.action,
        ctx.changes(),
        ctx.caller.principal if ctx.mode is WriteMode.API else None,
    )


async def sync_before_delete(ctx: WriteContext) -> None:
    if ctx.stored is None:  # pragma: no cover - a delete has its stored row
        return
    await call_sync(
        ctx.connection(),
        ctx.app.service(OUTBOUND),
        ctx.snapshot[WEBHOOKS],
        "before_delete",
        ctx.entity.name,
        "delete",
        ctx.changes(),
        ctx.caller.principal,
    )


async def after_delete(ctx: WriteContext) -> None:
    if ctx.stored is None:  # pragma: no cover - a delete has its stored row
        return
    await enqueue_async(
        ctx.connection(),
        ctx.snapshot[WEBHOOKS],
        "after_delete",
        ctx.entity.name,
        "delete",
        ctx.changes(),
        ctx.caller.principal,
    )


API_AND_SYSTEM: Final = WriteMode.API | WriteMode.SYSTEM

STAGES: Final = (
    Stage(
        "webhooks.sync_before_write",
        Phase.BEFORE_WRITE,
        40,
        sync_before_write,
        applies=_hooked("before_write"),
    ),
    Stage(
        "webhooks.after_write",
        Phase.AFTER_WRITE,
        30,
        after_write,
        applies=_hooked("after_write"),
        modes=API_AND_SYSTEM,
    ),
    Stage(
        "webhooks.sync_before_delete",
        Phase.AFTER_DELETE,
        10,
        sync_before_delete,
        applies=_hooked("before_delete"),
    ),
    Stage(
        "webhooks.after_delete",
        Phase.AFTER_DELETE,
        20,
        after_delete,
        applies=_hooked("after_delete"),
        modes=API_AND_SYSTEM,
    ),
)
