"""Evaluating state machines and running their transition actions inside the write transaction.

`decide` is pure: for every active machine of the entity it finds what the write does to the
state field (set the initial state, check it, or pick a transition), enforces the transition's
roles (403, admins bypass: upstream-gaps S7) and guard, and collects every violation into one 422.
`run_actions` then runs the chosen transitions' actions in order: `set_field` changes the write
itself; `create_record` inserts through the write pipeline as a system write; `webhook` writes a
delivery row into the webhook outbox (`_webhook_logs`), in the same transaction, so it exists only
if the write commits (C12); `send_event` announces a business event (`engine/business_events.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection

from rocketd.auth.principal import Principal
from rocketd.capabilities.state_machines.model import (
    NOW,
    Action,
    ActionValue,
    StateMachine,
    Transition,
)
from rocketd.capabilities.webhooks import enqueue_direct
from rocketd.engine.read.query import encode_record
from rocketd.engine.record_state import RecordState, json_value
from rocketd.errors import ErrorDetail, Forbidden, InternalError, ValidationFailed
from rocketd.expressions import EvaluationError
from rocketd.metadata.field_types import ValueProblem, coerce_write_value, value_text
from rocketd.metadata.model import Entity, Field
from rocketd.metadata.registry import Registry

RULE: Final = "state_machine"

# Inserts a record of another entity through the write pipeline; returns the encoded record.
CreateRecord = Callable[[Entity, dict[str, Any]], Awaitable[dict[str, Any]]]
# Announces a business event (name, metadata).
SendEvent = Callable[[str, dict[str, Any]], Awaitable[None]]


def state_text(value: Any) -> str:
    """A state value as the text transitions name (`""` for null): the canonical value text."""
    return value_text(json_value(value))


@dataclass(frozen=True)
class Firing:
    """A transition the write performs."""

    machine: StateMachine
    transition: Transition
    old: str
    new: str


@dataclass
class Decision:
    firings: list[Firing] = field(default_factory=list)
    initial: dict[str, str] = field(default_factory=dict)  # field -> initial state (create)


def _detail(machine: StateMachine, message: str) -> ErrorDetail:
    return ErrorDetail(message, machine.field, RULE)


def decide(machines: Sequence[StateMachine], state: RecordState, principal: Principal) -> Decision:
    """What the write does to every machine's state field (raises 403 / 422). Pure.

    Create: a write without the state field gets the initial state (rocketd's choice; upstream
    leaves it empty); a write with it must send the initial state. No actions run on create.
    Update without the field: nothing. Otherwise the first transition from the stored state to
    the new one, its roles, then its guard (evaluated with `action` = "update").
    """
    decision = Decision()
    details: list[ErrorDetail] = []
    for machine in machines:
        name = machine.field
        sent = state.payload.get(name)
        if state.action == "create":
            if machine.initial is None:
                continue
            if sent is None:
                decision.initial[name] = machine.initial
            elif state_text(sent) != machine.initial:
                details.append(
                    _detail(
                        machine,
                        f"Initial state must be '{machine.initial}', got '{state_text(sent)}'",
                    )
                )
            continue
        if name not in state.payload:
            continue
        new = state_text(sent)
        old = state_text(state.old.get(name))
        if new == old:
            continue
        transition = machine.transition(old, new)
        if transition is None:
            details.append(_detail(machine, f"Invalid transition from '{old}' to '{new}'"))
            continue
        if not principal.is_admin and not transition.allows(principal.roles):
            raise Forbidden(
                f"Transition from '{old}' to '{new}' requires one of roles:"
                f" {', '.join(transition.roles)}",
                [_detail(machine, f"requires one of roles: {', '.join(transition.roles)}")],
            )
        if transition.guard is not None:
            variables = {**state.variables(), "action": "update"}
            try:
                allowed = transition.guard.test(variables)
            except EvaluationError as exc:
                details.append(_detail(machine, f"Guard evaluation error: {exc.message}"))
                continue
            if not allowed:
                message = transition.message or (
                    f"Transition from '{old}' to '{new}' blocked by guard"
                )
                details.append(_detail(machine, message))
                continue
        decision.firings.append(Firing(machine, transition, old, new))
    if details:
        raise ValidationFailed(details=details)
    return decision


def apply_initial_states(decision: Decision, state: RecordState) -> None:
    for name, initial in decision.initial.items():
        target = state.entity.field_map[name]
        state.assign(name, _param(target, initial, state, name))


def _param(target: Field, value: Any, state: RecordState, where: str) -> Any:
    try:
        return coerce_write_value(target, value)
    except ValueProblem as problem:
        message = f"{where}: {state.entity.name}.{problem.message}"
        raise ValidationFailed(details=[ErrorDetail(message, target.name, RULE)]) from None


def _resolve(value: ActionValue, state: RecordState, where: str) -> Any:
    if value.expression is None:
        return value.literal
    try:
        return value.expression.evaluate({**state.variables(), "action": "update"})
    except EvaluationError as exc:
        message = f"{where}: action value error: {exc.message}"
        raise ValidationFailed(details=[ErrorDetail(message, rule=RULE)]) from None


def _now_for(target: Field, now: datetime) -> Any:
    if target.base_type == "timestamp":
        return now
    if target.base_type == "date":
        return now.date()
    return json_value(now)  # text fields get RFC 3339


def _data(action: Action, state: RecordState, where: str) -> dict[str, Any]:
    return {name: _resolve(value, state, f"{where}.{name}") for name, value in action.data}


def _event_source(firing: Firing, state: RecordState) -> dict[str, Any]:
    entity = state.entity
    record = encode_record(entity, state.db)
    return {
        "entity": entity.name,
        "record_id": record.get(entity.primary_key.field),
        "field": firing.machine.field,
        "from": firing.old,
        "to": firing.new,
        "state_machine_id": firing.machine.id,
        "user_id": state.user.get("id"),
        "at": json_value(state.now),
        "record": json_value(record),
    }


async def run_actions(
    conn: AsyncConnection[Any],
    registry: Registry,
    decision: Decision,
    state: RecordState,
    create_record: CreateRecord,
    send_event: SendEvent,
) -> None:
    """Run every firing's actions in order; values set by `set_field` go into `state`."""
    for firing in decision.firings:
        for index, action in enumerate(firing.transition.actions):
            where = f"{firing.machine.field} '{firing.old}' -> '{firing.new}' action {index}"
            await _run_action(
                conn, registry, firing, action, state, create_record, send_event, where
            )


async def _run_action(
    conn: AsyncConnection[Any],
    registry: Registry,
    firing: Firing,
    action: Action,
    state: RecordState,
    create_record: CreateRecord,
    send_event: SendEvent,
    where: str,
) -> None:
    if action.type == "set_field":
        target = state.entity.field_map.get(action.field)
        if target is None:  # pragma: no cover - checked when the machine was saved and loaded
            raise InternalError(f"set_field on unknown field {action.field}")
        literal = action.value.expression is None and action.value.literal == NOW
        value = _now_for(target, state.now) if literal else _resolve(action.value, state, where)
        state.assign(target.name, _param(target, value, state, where))
    elif action.type == "create_record":
        other = registry.entity(action.entity)
        if other is None:  # pragma: no cover - checked when the machine was saved and loaded
            raise InternalError(f"create_record into unknown entity {action.entity}")
        await create_record(other, _data(action, state, where))
    elif action.type == "webhook":
        # Through the webhook outbox (`_webhook_logs`, source 'state_machine'): delivered after
        # commit by the WebhookDispatcher, logged and retried like a registered webhook (C12).
        body = {
            "source": "state_machine",
            **_event_source(firing, state),
            "data": json_value(_data(action, state, where)),
        }
        await enqueue_direct(
            conn, "state_machine", state.entity.name, action.url, action.method, body
        )
    elif action.type == "send_event":
        metadata = {
            **_event_source(firing, state),
            "data": json_value(_data(action, state, where)),
        }
        await send_event(action.event or "", metadata)
