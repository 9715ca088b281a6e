"""State machines: the typed model, parsing and validation of `_state_machines` rows.

`parse_state_machine` reads an admin body (or a stored row) on its own: wrong JSON types of the
top-level keys are 400 `INVALID_PAYLOAD`, everything else is one 422 `MetadataError` listing every
problem (malformed transitions, guards and action values that do not compile, ...).
`state_machine_problems_in` checks a parsed machine against an app's entities (the field exists,
states come from its enum, `set_field` targets are writable, literals fit their fields).
`MachineBook` is the snapshot part the write stages read: the active machines by entity.
Expressions are compiled here, once; nothing here touches the database or knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import regex

from rocketd.errors import ErrorDetail
from rocketd.expressions import Expression
from rocketd.metadata.definitions import (
    check_body,
    compile_checked,
    computed_writable,
    field_name_of,
    literal_problem,
    load_row,
    message_of,
)
from rocketd.metadata.model import Entity
from rocketd.metadata.parse import Problems, check_keys, is_blank, join_path
from rocketd.metadata.registry import Registry

ACTION_TYPES: Final[tuple[str, ...]] = ("set_field", "create_record", "webhook", "send_event")
WEBHOOK_METHODS: Final[tuple[str, ...]] = ("POST", "PUT", "PATCH", "DELETE", "GET")
STATE_MACHINE_KEYS: Final = frozenset({"entity", "field", "definition", "active"})
STATE_MACHINE_DEFINITION_KEYS: Final = frozenset({"initial", "transitions"})
TRANSITION_KEYS: Final = frozenset({"from", "to", "roles", "guard", "message", "actions"})
ACTION_KEYS: Final = frozenset(
    {"type", "field", "value", "url", "method", "event", "entity", "data", "values"}
)

# The `value` "now" of a set_field action.
NOW: Final = "now"
_STATE_TYPES_EXCLUDED: Final = frozenset({"json", "file"})
_TEMPLATE: Final = regex.compile(r"\{\{(.+)\}\}", regex.DOTALL)


# ------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class ActionValue:
    """A value of an action: a literal, or `"{{ expression }}"` evaluated when the action runs."""

    literal: Any = None
    expression: Expression | None = None


@dataclass(frozen=True)
class Action:
    """One action of a transition; which keys matter depends on `type`."""

    type: str
    field: str = ""
    value: ActionValue = ActionValue()
    entity: str = ""
    data: tuple[tuple[str, ActionValue], ...] = ()
    url: str = ""
    method: str = "POST"
    event: str = ""


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]
    to: str
    roles: tuple[str, ...] = ()
    guard: Expression | None = None
    message: str = ""
    actions: tuple[Action, ...] = ()

    def allows(self, roles: Iterable[str]) -> bool:
        return not self.roles or any(role in self.roles for role in roles)


@dataclass(frozen=True)
class StateMachine:
    """One row of `_state_machines`. `raw_definition` is the definition as stored and echoed."""

    entity: str
    field: str
    transitions: tuple[Transition, ...]
    raw_definition: Mapping[str, Any]
    initial: str | None = None
    active: bool = True
    id: str = ""

    def transition(self, old: str, new: str) -> Transition | None:
        """The first transition from `old` to `new` (spec: first match wins)."""
        for transition in self.transitions:
            if transition.to == new and old in transition.sources:
                return transition
        return None

    def states(self) -> tuple[str, ...]:
        """Every state the machine names: the initial one first, then in order of appearance."""
        seen: dict[str, None] = {}
        if self.initial:
            seen[self.initial] = None
        for transition in self.transitions:
            for state in (*transition.sources, transition.to):
                seen.setdefault(state, None)
        return tuple(seen)

    def graph(self) -> dict[str, Any]:
        """States and edges for the admin UI: one edge per (from, to) pair."""
        outgoing = {s for t in self.transitions for s in t.sources}
        incoming = {t.to for t in self.transitions}
        return {
            "initial": self.initial,
            "states": [
                {
                    "name": state,
                    "initial": state == self.initial,
                    "terminal": state not in outgoing,
                    "reachable": state == self.initial or state in incoming,
                }
                for state in self.states()
            ],
            "edges": [
                {
                    "from": source,
                    "to": transition.to,
                    "roles": list(transition.roles),
                    "guarded": transition.guard is not None,
                    "actions": [action.type for action in transition.actions],
                }
                for transition in self.transitions
                for source in transition.sources
            ],
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id} if self.id else {}
        out.update(
            entity=self.entity,
            field=self.field,
            definition=dict(self.raw_definition),
            active=self.active,
        )
        return out


# ---------------------------------------------------------------------------------- parsing


def parse_state_machine(data: object) -> StateMachine:
    """An admin body or stored row as a `StateMachine` (400 wrong JSON types, 422 the rest)."""
    body = check_body(
        data,
        STATE_MACHINE_KEYS,
        {"entity": str, "field": str, "definition": dict, "active": bool},
    )
    problems = Problems()
    entity = body.get("entity") or ""
    if not entity:
        problems.add("entity", "entity is required")
    state_field = body.get("field") or ""
    if not state_field:
        problems.add("field", "field is required")
    raw = body.get("definition")
    definition: dict[str, Any] = raw if isinstance(raw, dict) else {}
    check_keys(definition, STATE_MACHINE_DEFINITION_KEYS, "definition", "definition", problems)
    initial = definition.get("initial")
    if is_blank(initial):
        initial = None
    elif not isinstance(initial, str):
        problems.add("definition.initial", "definition.initial must be a string")
        initial = None
    raw_transitions = definition.get("transitions")
    transitions: list[Transition] = []
    if not raw_transitions:
        problems.add("definition.transitions", "at least one transition is required")
    elif not isinstance(raw_transitions, list):
        problems.add("definition.transitions", "definition.transitions must be a list")
    else:
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(raw_transitions):
            where = f"definition.transitions[{index}]"
            transition = _parse_transition(item, where, problems)
            if transition is None:
                continue
            for source in transition.sources:
                first = seen.setdefault((source, transition.to), index)
                if first != index:
                    problems.add(
                        where,
                        f"duplicate transition from '{source}' to '{transition.to}'"
                        f" (also definition.transitions[{first}])",
                    )
            transitions.append(transition)
    problems.raise_if_any()
    active = body.get("active")
    return StateMachine(
        entity=entity,
        field=state_field,
        transitions=tuple(transitions),
        raw_definition=MappingProxyType(dict(definition)),
        initial=initial,
        active=True if active is None else active,
    )


def _state_list(raw: object, where: str, problems: Problems) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(s, str) and s for s in items):
        problems.add(where, f"{where} must be a state name or a non-empty list of state names")
        return ()
    return tuple(dict.fromkeys(items))


def _parse_transition(item: object, where: str, problems: Problems) -> Transition | None:
    if not isinstance(item, dict):
        problems.add(where, f"{where} must be an object with from and to")
        return None
    before = len(problems.details)
    check_keys(item, TRANSITION_KEYS, where, "a transition", problems)
    sources = _state_list(item.get("from"), join_path(where, "from"), problems)
    target = item.get("to")
    if not isinstance(target, str) or not target:
        problems.add(join_path(where, "to"), f"{where}.to must be a state name")
        target = ""
    if target and target in sources:
        problems.add(
            where,
            f"transition from '{target}' to '{target}' never applies"
            " (writing the current state again is not a transition)",
        )
    roles = item.get("roles")
    if roles is None:
        roles = []
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        problems.add(join_path(where, "roles"), f"{where}.roles must be a list of role names")
        roles = []
    guard: Expression | None = None
    if not is_blank(item.get("guard")):
        guard = compile_checked(item.get("guard"), join_path(where, "guard"), problems)
    message = message_of(item, where, problems)
    raw_actions = item.get("actions")
    actions: list[Action] = []
    if raw_actions is not None and not isinstance(raw_actions, list):
        problems.add(join_path(where, "actions"), f"{where}.actions must be a list")
    else:
        for index, raw_action in enumerate(raw_actions or []):
            action = _parse_action(raw_action, f"{where}.actions[{index}]", problems)
            if action is not None:
                actions.append(action)
    if len(problems.details) > before:
        return None
    return Transition(sources, target, tuple(roles), guard, message, tuple(actions))


def _action_value(raw: object, where: str, problems: Problems) -> ActionValue:
    """A literal, or a whole-string `{{ expression }}` compiled now."""
    if isinstance(raw, str):
        match = _TEMPLATE.fullmatch(raw.strip())
        if match:
            expression = compile_checked(match.group(1).strip(), where, problems)
            return ActionValue(expression=expression)
    return ActionValue(literal=raw)


def _action_data(
    raw: object, where: str, problems: Problems
) -> tuple[tuple[str, ActionValue], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.add(where, f"{where} must be an object")
        return ()
    return tuple((str(k), _action_value(v, f"{where}.{k}", problems)) for k, v in raw.items())


def _parse_action(raw: object, where: str, problems: Problems) -> Action | None:
    if not isinstance(raw, dict):
        problems.add(where, f"{where} must be an object with a type")
        return None
    check_keys(raw, ACTION_KEYS, where, "an action", problems)
    kind = raw.get("type")
    if kind not in ACTION_TYPES:
        problems.add(
            join_path(where, "type"),
            f"invalid action type: {kind} (must be one of {', '.join(ACTION_TYPES)})",
        )
        return None
    assert isinstance(kind, str)
    if kind == "set_field":
        target = field_name_of(raw, "field", where, problems, "the field to set")
        if "value" not in raw:
            problems.add(
                join_path(where, "value"), f'{where}.value is required ("now" for the time)'
            )
        value = _action_value(raw.get("value"), join_path(where, "value"), problems)
        return Action(kind, field=target, value=value)
    if kind == "create_record":
        entity = raw.get("entity")
        if not isinstance(entity, str) or not entity:
            problems.add(join_path(where, "entity"), f"{where}.entity is required")
            entity = ""
        if "data" in raw and "values" in raw:
            problems.add(where, f"{where}: give data or values, not both")
        key = "values" if "values" in raw else "data"
        data = _action_data(raw.get(key), join_path(where, key), problems)
        return Action(kind, entity=entity, data=data)
    if kind == "webhook":
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.add(join_path(where, "url"), f"{where}.url must be an http:// or https:// URL")
            url = ""
        method = raw.get("method") or "POST"
        if not isinstance(method, str) or method.upper() not in WEBHOOK_METHODS:
            problems.add(
                join_path(where, "method"),
                f"{where}.method must be one of {', '.join(WEBHOOK_METHODS)}",
            )
            method = "POST"
        data = _action_data(raw.get("data"), join_path(where, "data"), problems)
        return Action(kind, url=url, method=method.upper(), data=data)
    event = raw.get("event")
    if not isinstance(event, str) or not event:
        problems.add(join_path(where, "event"), f"{where}.event is required (the event name)")
        event = ""
    data = _action_data(raw.get("data"), join_path(where, "data"), problems)
    return Action(kind, event=event, data=data)


# ----------------------------------------------------------------- validation in context


def state_machine_problems_in(registry: Registry, machine: StateMachine) -> list[ErrorDetail]:
    """Problems `machine` has with the app's entities: the field, its enum, the actions."""
    problems = Problems()
    entity = registry.entity(machine.entity)
    if entity is None:
        problems.add("entity", f"entity not found: {machine.entity}")
        return problems.details
    state_field = entity.field_map.get(machine.field)
    if state_field is None:
        problems.add("field", f"field not found: {entity.name}.{machine.field}")
        return problems.details
    if state_field.base_type in _STATE_TYPES_EXCLUDED:
        problems.add("field", f"{entity.name}.{machine.field} is a {state_field.type} field")
    if not computed_writable(entity, machine.field, "update"):
        problems.add(
            "field",
            f"{entity.name}.{machine.field} is not writable (a primary key or auto field)",
        )
    if state_field.enum:
        allowed = set(state_field.enum)
        listed = ", ".join(state_field.enum)
        states = [("definition.initial", machine.initial)] if machine.initial else []
        for index, transition in enumerate(machine.transitions):
            where = f"definition.transitions[{index}]"
            states += [(f"{where}.from", s) for s in transition.sources]
            states.append((f"{where}.to", transition.to))
        for path, state in states:
            if state not in allowed:
                problems.add(
                    path,
                    f"state '{state}' is not in the enum of {entity.name}.{machine.field}"
                    f" ({listed})",
                )
    if machine.initial and state_field.has_default and state_field.default != machine.initial:
        problems.add(
            "definition.initial",
            f"initial state '{machine.initial}' differs from the default"
            f" {state_field.default!r} of {entity.name}.{machine.field}: a create without"
            " the field would get the default; make them equal",
        )
    for index, transition in enumerate(machine.transitions):
        for number, action in enumerate(transition.actions):
            where = f"definition.transitions[{index}].actions[{number}]"
            _action_problems(registry, entity, action, where, problems)
    return problems.details


def _action_problems(
    registry: Registry, entity: Entity, action: Action, where: str, problems: Problems
) -> None:
    if action.type == "set_field":
        target = entity.field_map.get(action.field)
        if target is None:
            problems.add(join_path(where, "field"), f"unknown field: {entity.name}.{action.field}")
        elif not computed_writable(entity, action.field, "update"):
            problems.add(
                join_path(where, "field"),
                f"{entity.name}.{action.field} is not writable (a primary key or auto field)",
            )
        elif action.value.expression is None:
            literal = action.value.literal
            if literal == NOW:
                if target.base_type not in ("timestamp", "date", "string", "text"):
                    problems.add(
                        join_path(where, "value"),
                        f'"now" cannot be stored in {entity.name}.{target.name} ({target.type})',
                    )
            else:
                problem = literal_problem(target, literal)
                if problem is not None:
                    problems.add(join_path(where, "value"), f"{entity.name}.{problem}")
    elif action.type == "create_record":
        target_entity = registry.entity(action.entity)
        if target_entity is None:
            problems.add(join_path(where, "entity"), f"entity not found: {action.entity}")
            return
        for name, value in action.data:
            target = target_entity.field_map.get(name)
            if target is None:
                problems.add(
                    join_path(where, f"data.{name}"), f"unknown field: {target_entity.name}.{name}"
                )
            elif value.expression is None and value.literal is not None:
                problem = literal_problem(target, value.literal)
                if problem is not None:
                    problems.add(
                        join_path(where, f"data.{name}"), f"{target_entity.name}.{problem}"
                    )


# --------------------------------------------------------------------------------- the book


@dataclass(frozen=True)
class MachineBook:
    """Every active state machine of an app by entity (ordered by field), built once per
    reload; rows that no longer parse or fit the metadata are skipped and listed in `problems`."""

    entities: Mapping[str, tuple[StateMachine, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def for_entity(self, name: str) -> tuple[StateMachine, ...]:
        return self.entities.get(name, ())

    @classmethod
    def build(cls, registry: Registry, rows: Iterable[Mapping[str, Any]]) -> MachineBook:
        problems: list[str] = []
        machines: dict[str, list[StateMachine]] = {}
        for row in rows:
            machine = load_row(
                parse_state_machine,
                state_machine_problems_in,
                registry,
                row,
                "state machine",
                problems,
            )
            if machine is not None and machine.active:
                machines.setdefault(machine.entity, []).append(machine)
        entities = {
            name: tuple(sorted(found, key=lambda m: (m.field, m.id)))
            for name, found in sorted(machines.items())
        }
        return cls(MappingProxyType(entities), tuple(problems))


EMPTY_MACHINE_BOOK: Final = MachineBook()
