"""`WriteContext.write_state`: the BEFORE_WRITE stages of one write (rules, state machines, sync
webhooks) share one `RecordState`, and what one stage assigns is in it for the next."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, cast

import pytest

from rocketd.auth.principal import Principal
from rocketd.engine.caller import Caller
from rocketd.engine.pipeline import WriteContext, WriteMode
from rocketd.engine.write.plan import WritePlan
from rocketd.metadata.model import Entity, Field, PrimaryKey

ITEM = Entity(
    "item",
    "items",
    PrimaryKey("id", "int"),
    (
        Field("id", "int", required=True),
        Field("qty", "int"),
        Field("total", "int"),
        Field("status", "string"),
    ),
)
CALLER = Caller(Principal("u-1", ("clerk",)))


def _context(action: str, values: dict[str, Any], stored: dict[str, Any] | None = None) -> Any:
    plan = WritePlan(ITEM, action, MappingProxyType(values))  # type: ignore[arg-type]
    return WriteContext(
        app=cast(Any, None),  # never reached: the stored row is given, a create has none
        caller=CALLER,
        mode=WriteMode.API,
        entity=ITEM,
        action=action,  # type: ignore[arg-type]
        plan=plan,
        stored=stored,
    )


async def test_stages_in_a_row_share_one_state() -> None:
    ctx = _context("create", {"qty": 2})
    first = await ctx.write_state()
    assert await ctx.write_state() is first
    assert first.record["qty"] == 2 and first.old == {}


async def test_what_a_stage_assigns_is_in_the_plan_and_in_the_next_stages_state() -> None:
    ctx = _context("update", {"qty": 3}, stored={"id": 7, "qty": 1, "total": 1, "status": "open"})
    state = await ctx.write_state()
    state.assign("total", 30)
    ctx.apply_state(state)
    assert dict(ctx.plan.values) == {"qty": 3, "total": 30}
    again = await ctx.write_state()
    assert again is state
    assert (again.record["qty"], again.record["total"], again.old["total"]) == (3, 30, 1)
    assert again.payload == {"qty": 3, "total": 30}


async def test_a_plan_replaced_otherwise_gets_a_state_of_its_own() -> None:
    ctx = _context("update", {"qty": 3}, stored={"id": 7, "qty": 1, "total": 1, "status": "open"})
    first = await ctx.write_state()
    ctx.plan = WritePlan(ITEM, "update", MappingProxyType({"status": "closed"}))
    second = await ctx.write_state()
    assert second is not first
    assert second.payload == {"status": "closed"}
    assert second.record == {"id": 7, "qty": 1, "total": 1, "status": "closed"}


async def test_without_a_plan_it_refuses() -> None:
    ctx = _context("create", {})
    ctx.plan = None
    with pytest.raises(RuntimeError):
        await ctx.write_state()
    with pytest.raises(RuntimeError):
        ctx.apply_state(cast(Any, None))
