"""Stages of the write pipeline that run inside the write transaction around the SQL write.

`records` calls these at fixed points; capabilities add their work here, in contract order:

    before_write:  rules (field -> expression -> computed) -> state machines     (no SQL yet)
    after_write:   after_write rules, outbox rows (webhooks, events, workflow instances)
    before_delete: before_delete rules

Today the data API has none of those capabilities, so each stage returns the plan unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from psycopg import AsyncConnection

from rocketd.auth.principal import Principal
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.writes import WritePlan
from rocketd.metadata.model import Entity

Action = Literal["create", "update"]


async def before_write(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    action: Action,
    plan: WritePlan,
    old: Mapping[str, Any] | None,
) -> WritePlan:
    """Runs after the stored row is locked and before any SQL write; may return a new plan."""
    return plan


async def after_write(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    action: Action,
    record: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> None:
    """Runs after the parent and nested writes, before COMMIT."""


async def before_delete(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    stored: Mapping[str, Any],
) -> None:
    """Runs after the stored row is locked and before the delete and its cascades."""
