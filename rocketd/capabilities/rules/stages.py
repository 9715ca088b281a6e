"""The rules' write stages: `before_write` rules on the planned values (field, expression,
computed; they may set fields), `after_write` rules on the written record, `before_delete` rules
on the stored row. API writes only: system writes (workflow actions, imports) skip validation,
since the workflow or the import file is the authority (docs/workflows.md). Nested children run
their own entity's rules (`children=True`); a violation names the child's fields with its path.
"""

from __future__ import annotations

from collections.abc import Callable

from rocketd.capabilities.rules.evaluate import check_rules
from rocketd.capabilities.rules.model import EMPTY_RULE_BOOK, RuleBook
from rocketd.engine.record_state import RecordState, decode_record
from rocketd.engine.snapshot import AppSnapshot
from rocketd.extensions import Phase, SnapshotKey, Stage, WriteContext, WriteMode
from rocketd.metadata.model import Entity

RULE_BOOK: SnapshotKey[RuleBook] = SnapshotKey("rules", EMPTY_RULE_BOOK)


async def before_write(ctx: WriteContext) -> None:
    rules = ctx.snapshot[RULE_BOOK].for_entity(ctx.entity.name).before_write
    if ctx.plan is None:  # pragma: no cover - BEFORE_WRITE always has a plan
        return
    state = await ctx.write_state()
    await check_rules(ctx.connection(), ctx.registry, rules, state)
    ctx.apply_state(state)


async def after_write(ctx: WriteContext) -> None:
    rules = ctx.snapshot[RULE_BOOK].for_entity(ctx.entity.name).after_write
    record = await ctx.load_record()
    if record is None:
        return
    row = decode_record(ctx.entity, record)
    state = RecordState.for_record(ctx.entity, ctx.action, row, ctx.stored, ctx.caller.principal)
    await check_rules(ctx.connection(), ctx.registry, rules, state)


async def before_delete(ctx: WriteContext) -> None:
    rules = ctx.snapshot[RULE_BOOK].for_entity(ctx.entity.name).before_delete
    stored = await ctx.load_stored()
    if stored is None:
        return
    state = RecordState.for_record(ctx.entity, "delete", stored, stored, ctx.caller.principal)
    await check_rules(ctx.connection(), ctx.registry, rules, state)


def _has(hook: str) -> Callable[[AppSnapshot, Entity], bool]:
    def applies(snapshot: AppSnapshot, entity: Entity) -> bool:
        return bool(getattr(snapshot[RULE_BOOK].for_entity(entity.name), hook))

    return applies


STAGES = (
    Stage(
        "rules.before_write",
        Phase.BEFORE_WRITE,
        20,
        before_write,
        applies=_has("before_write"),
        modes=WriteMode.API,
        children=True,
    ),
    Stage(
        "rules.after_write",
        Phase.AFTER_WRITE,
        20,
        after_write,
        applies=_has("after_write"),
        modes=WriteMode.API,
        children=True,
    ),
    Stage(
        "rules.before_delete",
        Phase.BEFORE_DELETE,
        20,
        before_delete,
        applies=_has("before_delete"),
        modes=WriteMode.API,
        children=True,
    ),
)
