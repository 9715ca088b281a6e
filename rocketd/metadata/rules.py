"""Validation rules and state machines: the typed model, parsing and validation, and the RuleBook.

`parse_rule` / `parse_state_machine` read an admin body (or a stored row) on its own: wrong JSON
types of the top-level keys are 400 `INVALID_PAYLOAD` (`InvalidPayload`), everything else is one
422 `MetadataError` listing every problem (unknown operators, bad `value` types, invalid regexes,
expressions that do not compile, malformed transitions, ...). `rule_problems_in` /
`state_machine_problems_in` check a parsed definition against an app's entities and relations
(fields exist, computed targets are writable, states come from the field's enum, ...).
`RuleBook.build` turns the stored rows into the frozen per-entity book the write pipeline reads;
rows that no longer fit the metadata are skipped and listed in `problems`.

Expressions are compiled here, once, with `rocketd.engine.expressions`; nothing here touches the
database or knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, TypeVar

import regex

from rocketd.engine import patterns
from rocketd.engine.expressions import Expression, ExpressionError, compile_expression
from rocketd.engine.values import (
    INT32_MAX,
    INT32_MIN,
    ValueProblem,
    coerce_write_value,
    range_problem,
)
from rocketd.errors import ErrorDetail, InvalidPayload
from rocketd.metadata.model import DELETED_AT, Entity, Field

# The parse helpers of entity metadata: the same problem collector and messages here.
from rocketd.metadata.parse import (
    MetadataError,
    _blank,
    _check_keys,
    _join,
    _Problems,
    is_valid_name,
)
from rocketd.metadata.registry import Registry

HOOKS: Final[tuple[str, ...]] = ("before_write", "before_delete", "after_write")
RULE_TYPES: Final[tuple[str, ...]] = ("field", "expression", "computed")
FIELD_OPERATORS: Final[tuple[str, ...]] = (
    "min",
    "max",
    "min_length",
    "max_length",
    "pattern",
    "required",
    "enum",
)
ACTION_TYPES: Final[tuple[str, ...]] = ("set_field", "create_record", "webhook", "send_event")
WEBHOOK_METHODS: Final[tuple[str, ...]] = ("POST", "PUT", "PATCH", "DELETE", "GET")

# Keys of the admin bodies. `id`, `created_at` and `updated_at` are what GET returns: a client
# that sends a row back unchanged is accepted (they are ignored; the URL names the row).
ROW_KEYS: Final = frozenset({"id", "created_at", "updated_at"})
RULE_KEYS: Final = frozenset({"entity", "hook", "type", "definition", "priority", "active"})
STATE_MACHINE_KEYS: Final = frozenset({"entity", "field", "definition", "active"})
RULE_DEFINITION_KEYS: Final = frozenset(
    {"field", "operator", "value", "expression", "message", "stop_on_fail", "related_load"}
)
RELATED_LOAD_KEYS: Final = frozenset({"relation", "filter"})
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
class RelatedLoad:
    """`{"relation": name, "filter": {field: value}}`: related rows exposed as `related[name]`."""

    relation: str
    filter: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"relation": self.relation, "filter": dict(self.filter)}


@dataclass(frozen=True)
class FieldRule:
    """A check of one field's value with an operator (`min`, `pattern`, ...)."""

    field: str
    operator: str
    value: Any = None
    pattern: regex.Pattern[str] | None = None


@dataclass(frozen=True)
class ExpressionRule:
    """Violated when the expression is true."""

    expression: Expression


@dataclass(frozen=True)
class ComputedRule:
    """The expression's value is written to `field` before the SQL write."""

    field: str
    expression: Expression


RuleDefinition = FieldRule | ExpressionRule | ComputedRule


@dataclass(frozen=True)
class Rule:
    """One row of `_rules`. `raw_definition` is the definition as stored and echoed."""

    entity: str
    hook: str
    type: str
    definition: RuleDefinition
    raw_definition: Mapping[str, Any]
    priority: int = 0
    active: bool = True
    id: str = ""
    message: str = ""
    stop_on_fail: bool = False
    related_load: tuple[RelatedLoad, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id} if self.id else {}
        out.update(
            entity=self.entity,
            hook=self.hook,
            type=self.type,
            definition=dict(self.raw_definition),
            priority=self.priority,
            active=self.active,
        )
        return out


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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_body(data: object, allowed: frozenset[str], types: Mapping[str, type]) -> dict[str, Any]:
    """The top level of an admin body: an object with known keys of the right JSON types (400)."""
    if not isinstance(data, dict):
        raise InvalidPayload("Invalid JSON body", [ErrorDetail("body must be a JSON object")])
    details: list[ErrorDetail] = []
    known = allowed | ROW_KEYS
    for key in sorted(k for k in data if k not in known):
        details.append(
            ErrorDetail(
                f"unknown field '{key}'; allowed: {', '.join(sorted(allowed))}", key, "unknown"
            )
        )
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}
    for key, expected in types.items():
        value = data.get(key)
        if value is None:
            continue
        wrong = not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        if wrong:
            details.append(ErrorDetail(f"{key} must be {names[expected]}", key, "type"))
    if details:
        raise InvalidPayload("Invalid JSON body", details)
    return data


def compile_checked(source: object, path: str, problems: _Problems) -> Expression | None:
    """The compiled expression, or None after reporting `invalid expression: ...`."""
    if not isinstance(source, str) or not source.strip():
        problems.add(path, f"{path} must be a non-empty expression string")
        return None
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        # The first line: message, position and an excerpt (the caret line is for terminals).
        problems.add(path, f"invalid expression: {str(exc).splitlines()[0]}")
        return None


def compile_pattern(source: str) -> regex.Pattern[str]:
    """A `pattern` rule's regex (Python syntax), within the pattern limits; raises
    `patterns.PatternError`."""
    return patterns.compile_pattern(source)


def _message(data: Mapping[str, Any], path: str, problems: _Problems) -> str:
    value = data.get("message")
    if _blank(value):
        return ""
    if not isinstance(value, str):
        problems.add(_join(path, "message"), f"{_join(path, 'message')} must be a string")
        return ""
    return value


def parse_rule(data: object) -> Rule:
    """An admin body or stored row as a `Rule` (400 for wrong JSON types, 422 for the rest)."""
    body = _check_body(
        data,
        RULE_KEYS,
        {
            "entity": str,
            "hook": str,
            "type": str,
            "definition": dict,
            "priority": int,
            "active": bool,
        },
    )
    problems = _Problems()
    entity = body.get("entity") or ""
    if not entity:
        problems.add("entity", "entity is required")
    hook = body.get("hook") or ""
    if not hook:
        problems.add("hook", f"hook is required (one of {', '.join(HOOKS)})")
    elif hook not in HOOKS:
        problems.add(
            "hook", f"invalid hook: {hook} (must be before_write, before_delete, or after_write)"
        )
    rule_type = body.get("type") or ""
    if rule_type not in RULE_TYPES:
        problems.add(
            "type", f"invalid rule type: {rule_type} (must be field, expression, or computed)"
        )
    raw = body.get("definition")
    definition: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if raw is None:
        problems.add("definition", "definition is required")
    _check_keys(definition, RULE_DEFINITION_KEYS, "definition", "definition", problems)
    message = _message(definition, "definition", problems)
    stop = definition.get("stop_on_fail")
    if stop is not None and not isinstance(stop, bool):
        problems.add("definition.stop_on_fail", "definition.stop_on_fail must be true or false")
    related = _parse_related_load(definition.get("related_load"), problems)
    parsed: RuleDefinition | None = None
    if rule_type == "field":
        parsed = _parse_field_rule(definition, problems)
    elif rule_type == "expression":
        expression = compile_checked(
            definition.get("expression"), "definition.expression", problems
        )
        parsed = ExpressionRule(expression) if expression is not None else None
    elif rule_type == "computed":
        target = _name(definition, "field", "definition", problems, "the field to compute")
        expression = compile_checked(
            definition.get("expression"), "definition.expression", problems
        )
        parsed = ComputedRule(target, expression) if expression is not None else None
        if hook in ("before_delete", "after_write"):
            problems.add(
                "hook",
                f"computed rules run before the write; hook {hook} cannot set values"
                " (use before_write)",
            )
    priority = body.get("priority")
    if priority is not None and not INT32_MIN <= priority <= INT32_MAX:
        problems.add("priority", f"priority must be between {INT32_MIN} and {INT32_MAX}")
    problems.raise_if_any()
    assert parsed is not None  # every path that leaves it None reported a problem
    active = body.get("active")
    return Rule(
        entity=entity,
        hook=hook,
        type=rule_type,
        definition=parsed,
        raw_definition=MappingProxyType(dict(definition)),
        priority=0 if priority is None else priority,
        active=True if active is None else active,
        message=message,
        stop_on_fail=bool(stop),
        related_load=related,
    )


def _name(data: Mapping[str, Any], key: str, path: str, problems: _Problems, what: str) -> str:
    where = _join(path, key)
    value = data.get(key)
    if _blank(value):
        problems.add(where, f"{where} is required ({what})")
        return ""
    if not is_valid_name(value):
        problems.add(where, f"{where} must be a field name, got {value!r}")
        return ""
    assert isinstance(value, str)
    return value


def _parse_field_rule(definition: Mapping[str, Any], problems: _Problems) -> FieldRule | None:
    target = _name(definition, "field", "definition", problems, "the field to check")
    operator = definition.get("operator")
    if _blank(operator):
        problems.add(
            "definition.operator",
            f"definition.operator is required (one of {', '.join(FIELD_OPERATORS)})",
        )
        return None
    if operator not in FIELD_OPERATORS:
        problems.add(
            "definition.operator",
            f"invalid operator: {operator} (must be one of {', '.join(FIELD_OPERATORS)})",
        )
        return None
    assert isinstance(operator, str)
    value = definition.get("value")
    where = "definition.value"
    pattern: regex.Pattern[str] | None = None
    if operator in ("min", "max"):
        if not _is_number(value):
            problems.add(where, f"{operator} needs a number as value")
    elif operator in ("min_length", "max_length"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.add(where, f"{operator} needs a non-negative integer as value")
    elif operator == "pattern":
        if not isinstance(value, str) or not value:
            problems.add(where, "pattern needs a regular expression string as value")
        else:
            try:
                pattern = compile_pattern(value)
            except patterns.PatternError as exc:
                at = f" at position {exc.position}" if exc.position is not None else ""
                problems.add(where, f"invalid pattern: {exc.reason}{at}")
            except patterns.PatternTimeout as exc:  # only inside a write's budget
                problems.add(where, f"invalid pattern: {exc}")
    elif operator == "required":
        if value is not None and value is not True:
            problems.add(where, "required takes no value (or true)")
    elif operator == "enum":
        scalars = isinstance(value, list) and all(
            isinstance(v, str) or _is_number(v) or isinstance(v, bool) for v in value
        )
        if not scalars or not value:
            problems.add(where, "enum needs a non-empty list of strings or numbers as value")
    return FieldRule(target, operator, value, pattern)


def _parse_related_load(raw: object, problems: _Problems) -> tuple[RelatedLoad, ...]:
    path = "definition.related_load"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(path, f"{path} must be a list of {{relation, filter}} objects")
        return ()
    loads: list[RelatedLoad] = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, dict):
            problems.add(where, f"{where} must be an object with relation and filter")
            continue
        _check_keys(item, RELATED_LOAD_KEYS, where, where, problems)
        relation = item.get("relation")
        if not isinstance(relation, str) or not relation:
            problems.add(_join(where, "relation"), f"{where}.relation is required")
            continue
        raw_filter = item.get("filter")
        if raw_filter is None:
            raw_filter = {}
        if not isinstance(raw_filter, dict) or not all(
            value is None or isinstance(value, str | bool) or _is_number(value)
            for value in raw_filter.values()
        ):
            problems.add(
                _join(where, "filter"),
                f"{where}.filter must be an object of field -> string, number, boolean or null",
            )
            continue
        loads.append(RelatedLoad(relation, tuple(sorted(raw_filter.items()))))
    return tuple(loads)


def parse_state_machine(data: object) -> StateMachine:
    """An admin body or stored row as a `StateMachine` (400 wrong JSON types, 422 the rest)."""
    body = _check_body(
        data,
        STATE_MACHINE_KEYS,
        {"entity": str, "field": str, "definition": dict, "active": bool},
    )
    problems = _Problems()
    entity = body.get("entity") or ""
    if not entity:
        problems.add("entity", "entity is required")
    state_field = body.get("field") or ""
    if not state_field:
        problems.add("field", "field is required")
    raw = body.get("definition")
    definition: dict[str, Any] = raw if isinstance(raw, dict) else {}
    _check_keys(definition, STATE_MACHINE_DEFINITION_KEYS, "definition", "definition", problems)
    initial = definition.get("initial")
    if _blank(initial):
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


def _state_list(raw: object, where: str, problems: _Problems) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(s, str) and s for s in items):
        problems.add(where, f"{where} must be a state name or a non-empty list of state names")
        return ()
    return tuple(dict.fromkeys(items))


def _parse_transition(item: object, where: str, problems: _Problems) -> Transition | None:
    if not isinstance(item, dict):
        problems.add(where, f"{where} must be an object with from and to")
        return None
    before = len(problems.details)
    _check_keys(item, TRANSITION_KEYS, where, "a transition", problems)
    sources = _state_list(item.get("from"), _join(where, "from"), problems)
    target = item.get("to")
    if not isinstance(target, str) or not target:
        problems.add(_join(where, "to"), f"{where}.to must be a state name")
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
        problems.add(_join(where, "roles"), f"{where}.roles must be a list of role names")
        roles = []
    guard: Expression | None = None
    if not _blank(item.get("guard")):
        guard = compile_checked(item.get("guard"), _join(where, "guard"), problems)
    message = _message(item, where, problems)
    raw_actions = item.get("actions")
    actions: list[Action] = []
    if raw_actions is not None and not isinstance(raw_actions, list):
        problems.add(_join(where, "actions"), f"{where}.actions must be a list")
    else:
        for index, raw_action in enumerate(raw_actions or []):
            action = _parse_action(raw_action, f"{where}.actions[{index}]", problems)
            if action is not None:
                actions.append(action)
    if len(problems.details) > before:
        return None
    return Transition(sources, target, tuple(roles), guard, message, tuple(actions))


def _action_value(raw: object, where: str, problems: _Problems) -> ActionValue:
    """A literal, or a whole-string `{{ expression }}` compiled now."""
    if isinstance(raw, str):
        match = _TEMPLATE.fullmatch(raw.strip())
        if match:
            expression = compile_checked(match.group(1).strip(), where, problems)
            return ActionValue(expression=expression)
    return ActionValue(literal=raw)


def _action_data(
    raw: object, where: str, problems: _Problems
) -> tuple[tuple[str, ActionValue], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.add(where, f"{where} must be an object")
        return ()
    return tuple((str(k), _action_value(v, f"{where}.{k}", problems)) for k, v in raw.items())


def _parse_action(raw: object, where: str, problems: _Problems) -> Action | None:
    if not isinstance(raw, dict):
        problems.add(where, f"{where} must be an object with a type")
        return None
    _check_keys(raw, ACTION_KEYS, where, "an action", problems)
    kind = raw.get("type")
    if kind not in ACTION_TYPES:
        problems.add(
            _join(where, "type"),
            f"invalid action type: {kind} (must be one of {', '.join(ACTION_TYPES)})",
        )
        return None
    assert isinstance(kind, str)
    if kind == "set_field":
        target = _name(raw, "field", where, problems, "the field to set")
        if "value" not in raw:
            problems.add(_join(where, "value"), f'{where}.value is required ("now" for the time)')
        value = _action_value(raw.get("value"), _join(where, "value"), problems)
        return Action(kind, field=target, value=value)
    if kind == "create_record":
        entity = raw.get("entity")
        if not isinstance(entity, str) or not entity:
            problems.add(_join(where, "entity"), f"{where}.entity is required")
            entity = ""
        if "data" in raw and "values" in raw:
            problems.add(where, f"{where}: give data or values, not both")
        key = "values" if "values" in raw else "data"
        data = _action_data(raw.get(key), _join(where, key), problems)
        return Action(kind, entity=entity, data=data)
    if kind == "webhook":
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.add(_join(where, "url"), f"{where}.url must be an http:// or https:// URL")
            url = ""
        method = raw.get("method") or "POST"
        if not isinstance(method, str) or method.upper() not in WEBHOOK_METHODS:
            problems.add(
                _join(where, "method"),
                f"{where}.method must be one of {', '.join(WEBHOOK_METHODS)}",
            )
            method = "POST"
        data = _action_data(raw.get("data"), _join(where, "data"), problems)
        return Action(kind, url=url, method=method.upper(), data=data)
    event = raw.get("event")
    if not isinstance(event, str) or not event:
        problems.add(_join(where, "event"), f"{where}.event is required (the event name)")
        event = ""
    data = _action_data(raw.get("data"), _join(where, "data"), problems)
    return Action(kind, event=event, data=data)


# ----------------------------------------------------------------- validation in context


def computed_writable(entity: Entity, name: str, operation: str) -> bool:
    """Whether a computed rule or set_field action may write `name` for this operation."""
    if name == DELETED_AT:
        return False
    allowed = entity.writable_on_create if operation == "create" else entity.writable_on_update
    return name in allowed


def _literal_problem(target: Field, value: Any) -> str | None:
    try:
        coerce_write_value(target, value)
    except ValueProblem as problem:
        return problem.message
    return None


def rule_problems_in(registry: Registry, rule: Rule) -> list[ErrorDetail]:
    """Problems `rule` has with the app's entities and relations."""
    problems = _Problems()
    entity = registry.entity(rule.entity)
    if entity is None:
        problems.add("entity", f"entity not found: {rule.entity}")
        return problems.details
    spec = rule.definition
    if isinstance(spec, FieldRule | ComputedRule) and spec.field not in entity.field_map:
        problems.add(
            "definition.field",
            f"unknown field: {entity.name}.{spec.field} (fields: {', '.join(entity.field_map)})",
        )
    elif isinstance(spec, ComputedRule) and not (
        computed_writable(entity, spec.field, "create")
        or computed_writable(entity, spec.field, "update")
    ):
        problems.add(
            "definition.field",
            f"computed field {entity.name}.{spec.field} is not writable"
            " (primary keys, auto fields and deleted_at are set by the engine)",
        )
    for index, load in enumerate(rule.related_load):
        where = f"definition.related_load[{index}]"
        ref = registry.resolve(entity.name, load.relation)
        other = registry.entity(ref.other) if ref is not None else None
        if ref is None or other is None:
            problems.add(
                _join(where, "relation"),
                f"relation not found from {entity.name}: {load.relation}",
            )
            continue
        for name, value in load.filter:
            target = other.field_map.get(name)
            if target is None:
                problems.add(_join(where, f"filter.{name}"), f"unknown field: {other.name}.{name}")
                continue
            if target.base_type in ("json", "file"):
                problems.add(
                    _join(where, f"filter.{name}"),
                    f"{other.name}.{name} is a {target.type} field and cannot be filtered",
                )
                continue
            problem = _literal_problem(target, value)
            if problem is not None:
                problems.add(_join(where, f"filter.{name}"), f"{other.name}.{problem}")
    return problems.details


def new_rule_problems_in(registry: Registry, rule: Rule) -> list[ErrorDetail]:
    """`rule_problems_in`, plus the ranges of a field rule's numbers: what a rule must pass to be
    saved or imported. A bound must fit the field's column (a `min` of 1e20 for an int field
    can never be met), a length an int. Rules already stored are not held to the ranges, so
    loading them never changes what they do."""
    details = rule_problems_in(registry, rule)
    entity = registry.entity(rule.entity)
    spec = rule.definition
    if details or entity is None or not isinstance(spec, FieldRule):
        return details
    target = entity.field_map[spec.field]
    problems = _Problems()
    where = "definition.value"
    if spec.operator in ("min", "max"):
        problem = range_problem(target, spec.value)
        if problem:
            problems.add(
                where,
                f"{spec.operator} {spec.value} is out of range for {entity.name}.{target.name}"
                f" ({target.type}): {problem}",
            )
    elif spec.operator in ("min_length", "max_length") and spec.value > INT32_MAX:
        problems.add(where, f"{spec.operator} must be at most {INT32_MAX}")
    elif spec.operator == "enum":
        for index, item in enumerate(spec.value):
            problem = range_problem(target, item) if _is_number(item) else None
            if problem:
                problems.add(
                    f"{where}[{index}]",
                    f"enum value {item} is out of range for {entity.name}.{target.name}"
                    f" ({target.type}): {problem}",
                )
    return problems.details


def state_machine_problems_in(registry: Registry, machine: StateMachine) -> list[ErrorDetail]:
    """Problems `machine` has with the app's entities: the field, its enum, the actions."""
    problems = _Problems()
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
    registry: Registry, entity: Entity, action: Action, where: str, problems: _Problems
) -> None:
    if action.type == "set_field":
        target = entity.field_map.get(action.field)
        if target is None:
            problems.add(_join(where, "field"), f"unknown field: {entity.name}.{action.field}")
        elif not computed_writable(entity, action.field, "update"):
            problems.add(
                _join(where, "field"),
                f"{entity.name}.{action.field} is not writable (a primary key or auto field)",
            )
        elif action.value.expression is None:
            literal = action.value.literal
            if literal == NOW:
                if target.base_type not in ("timestamp", "date", "string", "text"):
                    problems.add(
                        _join(where, "value"),
                        f'"now" cannot be stored in {entity.name}.{target.name} ({target.type})',
                    )
            else:
                problem = _literal_problem(target, literal)
                if problem is not None:
                    problems.add(_join(where, "value"), f"{entity.name}.{problem}")
    elif action.type == "create_record":
        target_entity = registry.entity(action.entity)
        if target_entity is None:
            problems.add(_join(where, "entity"), f"entity not found: {action.entity}")
            return
        for name, value in action.data:
            target = target_entity.field_map.get(name)
            if target is None:
                problems.add(
                    _join(where, f"data.{name}"), f"unknown field: {target_entity.name}.{name}"
                )
            elif value.expression is None and value.literal is not None:
                problem = _literal_problem(target, value.literal)
                if problem is not None:
                    problems.add(_join(where, f"data.{name}"), f"{target_entity.name}.{problem}")


# --------------------------------------------------------------------------------- the book


@dataclass(frozen=True)
class EntityRules:
    """The active rules (by hook, in evaluation order) and state machines of one entity."""

    before_write: tuple[Rule, ...] = ()
    after_write: tuple[Rule, ...] = ()
    before_delete: tuple[Rule, ...] = ()
    machines: tuple[StateMachine, ...] = ()

    def for_hook(self, hook: str) -> tuple[Rule, ...]:
        rules: tuple[Rule, ...] = getattr(self, hook)
        return rules


NO_RULES: Final = EntityRules()
_Item = TypeVar("_Item", Rule, StateMachine)


@dataclass(frozen=True)
class RuleBook:
    """Every active rule and state machine of an app, by entity, compiled once per reload."""

    entities: Mapping[str, EntityRules] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def for_entity(self, name: str) -> EntityRules:
        return self.entities.get(name, NO_RULES)

    @classmethod
    def build(
        cls,
        registry: Registry,
        rule_rows: Iterable[Mapping[str, Any]],
        machine_rows: Iterable[Mapping[str, Any]],
    ) -> RuleBook:
        """A book from stored rows (`id`, `entity`, ..., `definition`). Never raises: a row that
        no longer parses or fits the metadata is skipped and described in `problems`."""
        problems: list[str] = []
        rules: dict[str, dict[str, list[Rule]]] = {}
        for row in rule_rows:
            rule = _load(parse_rule, rule_problems_in, registry, row, "rule", problems)
            if rule is not None and rule.active:
                rules.setdefault(rule.entity, {}).setdefault(rule.hook, []).append(rule)
        machines: dict[str, list[StateMachine]] = {}
        for row in machine_rows:
            machine = _load(
                parse_state_machine,
                state_machine_problems_in,
                registry,
                row,
                "state machine",
                problems,
            )
            if machine is not None and machine.active:
                machines.setdefault(machine.entity, []).append(machine)
        entities: dict[str, EntityRules] = {}
        for name in sorted(set(rules) | set(machines)):
            hooks = rules.get(name, {})

            def ordered(hook: str, hooks: dict[str, list[Rule]] = hooks) -> tuple[Rule, ...]:
                return tuple(sorted(hooks.get(hook, []), key=lambda r: (r.priority, r.id)))

            entities[name] = EntityRules(
                before_write=ordered("before_write"),
                after_write=ordered("after_write"),
                before_delete=ordered("before_delete"),
                machines=tuple(sorted(machines.get(name, []), key=lambda m: (m.field, m.id))),
            )
        return cls(MappingProxyType(entities), tuple(problems))


EMPTY_RULE_BOOK: Final = RuleBook()


def _load(
    parse: Callable[[object], _Item],
    check: Callable[[Registry, _Item], list[ErrorDetail]],
    registry: Registry,
    row: Mapping[str, Any],
    kind: str,
    problems: list[str],
) -> _Item | None:
    """The parsed row with its id, or None after describing why it is skipped."""
    row_id = str(row.get("id", ""))
    body = {key: row.get(key) for key in row if key not in ROW_KEYS}
    try:
        parsed = parse(body)
    except (MetadataError, InvalidPayload) as exc:
        problems.append(f"{kind} {row_id} skipped: {_describe(exc.details) or exc.message}")
        return None
    found = check(registry, parsed)
    if found:
        problems.append(f"{kind} {row_id} skipped: {_describe(found)}")
        return None
    return replace(parsed, id=row_id)


def _describe(details: Sequence[ErrorDetail]) -> str:
    return "; ".join(d.message for d in details)
