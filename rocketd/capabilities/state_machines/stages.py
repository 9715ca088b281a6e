"""The state machines' write stages.

- PREPARE, every mode, nested children too: a create without the state field gets the machine's
  `initial` before validation, so a required state field need not be sent;
- BEFORE_WRITE, API writes and their nested children: `decide` checks the state change against
  the transitions (roles, guard; 403 / 422), then the transitions' actions run. `set_field`
  changes this write; `create_record` writes another record through the pipeline as a system
  write (its own initial states, webhooks; no rules or transition checks, like every system
  write); each transition is emitted as a `StateChanged` domain event.

System writes (workflow actions, imports) skip the transition checks: the workflow is the
authority (docs/workflows.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from rocketd.capabilities.state_machines.decide import apply_initial_states, decide, run_actions
from rocketd.capabilities.state_machines.model import EMPTY_MACHINE_BOOK, MachineBook
from rocketd.engine import records
from rocketd.engine.business_events import BusinessEvent, emit_business_event
from rocketd.engine.snapshot import AppSnapshot
from rocketd.extensions import (
    ALL_MODES,
    DomainEvent,
    Phase,
    SnapshotKey,
    Stage,
    WriteContext,
    WriteMode,
)
from rocketd.metadata.model import Entity

MACHINES: Final[SnapshotKey[MachineBook]] = SnapshotKey("state_machines", EMPTY_MACHINE_BOOK)


@dataclass(frozen=True)
class StateChanged(DomainEvent):
    """A transition a write performed (`entity`, `record_id` of the record; None on create)."""

    field: str
    from_state: str
    to_state: str


def _has_machines(snapshot: AppSnapshot, entity: Entity) -> bool:
    return bool(snapshot[MACHINES].for_entity(entity.name))


async def initial_states(ctx: WriteContext) -> None:
    """Fill each machine's `initial` into a create body that lacks the state field."""
    if ctx.action != "create" or ctx.body is None:
        return
    for machine in ctx.snapshot[MACHINES].for_entity(ctx.entity.name):
        if machine.initial is not None and ctx.body.get(machine.field) is None:
            ctx.body[machine.field] = machine.initial


async def transitions(ctx: WriteContext) -> None:
    machines = ctx.snapshot[MACHINES].for_entity(ctx.entity.name)
    if ctx.plan is None:  # pragma: no cover - BEFORE_WRITE always has a plan
        return
    principal = ctx.caller.principal
    state = await ctx.write_state()
    decision = decide(machines, state, principal)
    apply_initial_states(decision, state)
    conn = ctx.connection()

    async def create_record(target: Entity, body: dict[str, Any]) -> dict[str, Any]:
        return await records.create_in(
            conn,
            ctx.app,
            ctx.caller,
            target,
            body,
            mode=WriteMode.SYSTEM,
            after_commit=ctx.deferred,
        )

    async def send_event(name: str, metadata: dict[str, Any]) -> None:
        event = BusinessEvent(
            action=name,
            source="state_machine",
            entity=ctx.entity.name,
            record_id=None if ctx.pk is None else str(ctx.pk),
            metadata=metadata,
            trace_id=ctx.caller.trace_id,
        )
        # announced once the write committed: a rolled-back transition announces nothing
        ctx.deferred.append(lambda: emit_business_event(ctx.app, event))

    await run_actions(conn, ctx.registry, decision, state, create_record, send_event)
    ctx.apply_state(state)
    record_id = "" if ctx.pk is None else str(ctx.pk)
    for firing in decision.firings:
        ctx.emit(
            StateChanged(ctx.entity.name, record_id, firing.machine.field, firing.old, firing.new)
        )


STAGES: Final = (
    Stage(
        "state_machines.initial_states",
        Phase.PREPARE,
        20,
        initial_states,
        applies=_has_machines,
        modes=ALL_MODES,
        children=True,
    ),
    Stage(
        "state_machines.transitions",
        Phase.BEFORE_WRITE,
        30,
        transitions,
        applies=_has_machines,
        modes=WriteMode.API,
        children=True,
    ),
)
