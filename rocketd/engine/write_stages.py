"""Stages of the write pipeline that run inside the write transaction around the SQL write.

`records` calls these at fixed points; capabilities add their work here, in contract order:

    before_write:  rules (field -> expression -> computed) -> state machines     (no SQL yet)
                   -> sync before_write webhooks
    after_write:   after_write rules, outbox rows (webhooks, events, workflow instances)
    before_delete: before_delete rules
    after_delete:  sync before_delete webhooks (the row is gone), after_delete outbox rows

`before_write` runs right after the stored row is locked, so `old` is the current row and nothing
has been written yet: a violation (422) or a refused transition (403) rolls the transaction back
with nothing changed. State-machine actions run here too; `create_record` goes through these same
stages for the record it creates (its own rules and machines).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from psycopg import AsyncConnection

from rocketd.auth.principal import Principal
from rocketd.capabilities.state_machines import decide as state_machines
from rocketd.capabilities.webhooks import outbox
from rocketd.capabilities.workflows import instances as workflows
from rocketd.engine import record_state as rules
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.write import writes
from rocketd.engine.write.writes import WritePlan
from rocketd.metadata.model import Entity

Action = Literal["create", "update"]


def with_initial_states(
    snapshot: AppSnapshot, entity: Entity, body: Mapping[str, Any]
) -> dict[str, Any]:
    """The create body with each state machine's `initial` filled in where the state field is
    absent, before field validation, so a required state field need not be sent."""
    filled = dict(body)
    for machine in snapshot.rules.for_entity(entity.name).machines:
        if machine.initial is not None and filled.get(machine.field) is None:
            filled[machine.field] = machine.initial
    return filled


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
    plan = await _rules_and_machines(conn, snapshot, principal, entity, action, plan, old)
    if snapshot.webhooks.matching(entity.name, "before_write"):
        written = rules.RecordState.for_write(entity, action, plan.values, old, principal).payload
        await outbox.call_sync(
            conn, snapshot.webhooks, "before_write", entity.name, action, written, old, principal
        )
    return plan


async def _rules_and_machines(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    action: Action,
    plan: WritePlan,
    old: Mapping[str, Any] | None,
) -> WritePlan:
    book = snapshot.rules.for_entity(entity.name)
    if not book.before_write and not book.machines:
        return plan
    registry = snapshot.registry
    state = rules.RecordState.for_write(entity, action, plan.values, old, principal)
    await rules.check_rules(conn, registry, book.before_write, state)
    if book.machines:
        decision = state_machines.decide(book.machines, state, principal)
        state_machines.apply_initial_states(decision, state)

        async def create_record(target: Entity, body: dict[str, Any]) -> dict[str, Any]:
            return await _create_through_pipeline(conn, snapshot, principal, target, body)

        await state_machines.run_actions(conn, registry, decision, state, create_record)
    return state.apply_to(plan)


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
    after = snapshot.rules.for_entity(entity.name).after_write
    if after:
        row = rules.decode_record(entity, record)
        state = rules.RecordState.for_record(entity, action, row, old, principal)
        await rules.check_rules(conn, snapshot.registry, after, state)
    if snapshot.webhooks.matching(entity.name, "after_write"):  # API writes only (spec)
        await outbox.enqueue_async(
            conn, snapshot.webhooks, "after_write", entity.name, action, record, old, principal
        )
    if snapshot.workflows.for_entity(entity.name):  # instance rows commit with the write
        await workflows.start_instances(conn, snapshot, entity, record, old)


async def before_delete(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    stored: Mapping[str, Any],
) -> None:
    """Runs after the stored row is locked and before the delete and its cascades."""
    checks = snapshot.rules.for_entity(entity.name).before_delete
    if not checks:
        return
    state = rules.RecordState.for_record(entity, "delete", stored, stored, principal)
    await rules.check_rules(conn, snapshot.registry, checks, state)


async def after_delete(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    stored: Mapping[str, Any],
) -> None:
    """Runs right after the row and its cascades are deleted, before COMMIT: sync
    `before_delete` webhooks (a refusal rolls the delete back), then `after_delete` outbox rows."""
    book = snapshot.webhooks
    name = entity.name
    if book.matching(name, "before_delete"):
        await outbox.call_sync(conn, book, "before_delete", name, "delete", stored, None, principal)
    if book.matching(name, "after_delete"):
        await outbox.enqueue_async(
            conn, book, "after_delete", name, "delete", stored, None, principal
        )


async def _create_through_pipeline(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity: Entity,
    body: dict[str, Any],
) -> dict[str, Any]:
    """A `create_record` action: the same stages as a POST, inside the caller's transaction."""
    registry = snapshot.registry
    plan = writes.plan_create(registry, entity, with_initial_states(snapshot, entity, body))
    plan = await before_write(conn, snapshot, principal, entity, "create", plan, None)
    row = await writes.execute_create(conn, registry, plan)
    record = await writes.written_record(conn, registry, plan, row)
    await after_write(conn, snapshot, principal, entity, "create", record, None)
    return record
