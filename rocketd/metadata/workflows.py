"""Workflow definitions (`_workflows`): parsing and save-time validation, pure.

A definition is parsed into a frozen `Workflow` whose condition expressions are compiled and whose
timeouts are parsed, so running an instance never meets a malformed definition. Validation
collects every problem into one 422 (`MetadataError`) with the spec's messages, and adds ours:
gotos must name a step (or `end`), expressions must compile, timeouts must parse, and a cycle of
steps with no approval step in it is rejected (it would spin without ever waiting). Steps no path
reaches are not an error: they are reported as `warnings` (the admin API echoes them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from rocketd.engine.expressions import Expression, ExpressionError, compile_expression
from rocketd.errors import ErrorDetail
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry

END: Final = "end"
STEP_TYPES: Final = ("action", "condition", "approval")
ACTION_TYPES: Final = ("set_field", "webhook", "create_record", "send_event")
ASSIGNEE_TYPES: Final = ("role", "user", "fixed", "relation")
GOTO_KEYS: Final = {
    "action": ("then",),
    "condition": ("on_true", "on_false"),
    "approval": ("on_approve", "on_reject", "on_timeout"),
}
ROW_KEYS: Final = frozenset({"id", "created_at", "updated_at", "warnings"})
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The longest timeout: a deadline must stay a date (now + 10**9 days is past the year 9999).
MAX_DURATION: Final = timedelta(days=3650)


def parse_duration(text: object) -> timedelta | None:
    """A Go-style duration (`72h`, `1h30m`, `45s`, `500ms`) plus days (`2d`); None if invalid or
    longer than `MAX_DURATION`."""
    if not isinstance(text, str) or not text:
        return None
    position, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not 0 < seconds <= MAX_DURATION.total_seconds():
        return None
    return timedelta(seconds=seconds)


def resolve_path(root: Mapping[str, Any], path: str) -> Any:
    """A dot path (`trigger.record.title`) into nested objects; a missing segment gives None."""
    value: Any = root
    for segment in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(segment)
    return value


@dataclass(frozen=True)
class Assignee:
    type: str
    role: str | None = None
    user: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class WorkflowAction:
    type: str
    raw: Mapping[str, Any]

    def get(self, key: str) -> Any:
        return self.raw.get(key)


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    gotos: Mapping[str, str | None]  # goto key -> step id, None for end
    expression: Expression | None = None
    actions: tuple[WorkflowAction, ...] = ()
    assignee: Assignee | None = None
    timeout: timedelta | None = None

    def goto(self, key: str) -> str | None:
        return self.gotos.get(key)


@dataclass(frozen=True)
class Trigger:
    type: str
    entity: str
    field: str
    to: str


@dataclass(frozen=True)
class Workflow:
    name: str
    trigger: Trigger
    context: Mapping[str, str]
    steps: tuple[Step, ...]
    active: bool
    raw_trigger: Mapping[str, Any]
    raw_steps: Sequence[Any]
    warnings: tuple[str, ...] = ()
    id: str | None = None
    _by_id: Mapping[str, Step] = field(default_factory=dict, repr=False, compare=False)

    def step(self, step_id: str | None) -> Step | None:
        return None if step_id is None else self._by_id.get(step_id)

    @property
    def first_step(self) -> str:
        return self.steps[0].id

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "trigger": dict(self.raw_trigger),
            "context": dict(self.context),
            "steps": list(self.raw_steps),
            "active": self.active,
        }
        if self.id is not None:
            out = {"id": self.id, **out}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


class _Problems:
    def __init__(self) -> None:
        self.items: list[ErrorDetail] = []

    def add(self, message: str, where: str | None = None) -> None:
        self.items.append(ErrorDetail(message, where or ""))


def _goto(value: object, where: str, problems: _Problems) -> str | None:
    """A goto value: absent, `"end"`, `{"goto": ...}` or a bare step id."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("goto")
        if value is None:
            return None
    if not isinstance(value, str) or not value:
        problems.add(f"invalid goto: {where}", where)
        return None
    return None if value == END else value


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _parse_actions(raw: object, where: str, problems: _Problems) -> tuple[WorkflowAction, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(f"{where}: actions must be a list", where)
        return ()
    actions: list[WorkflowAction] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(f"{at}: an action must be an object", at)
            continue
        kind = _text(item.get("type"))
        if kind not in ACTION_TYPES:
            problems.add(
                f"{at}: invalid action type: {kind} (must be one of {', '.join(ACTION_TYPES)})",
                f"{at}.type",
            )
            continue
        if kind in ("set_field", "create_record") and not _text(item.get("entity")):
            problems.add(f"{kind} action missing entity", f"{at}.entity")
        if kind == "set_field":
            if not _text(item.get("field")):
                problems.add("set_field action missing field", f"{at}.field")
            if not _text(item.get("record_id")):
                problems.add("set_field action missing record_id", f"{at}.record_id")
        if kind == "create_record":
            data = item.get("data", item.get("value", {}))
            if not isinstance(data, Mapping):
                problems.add("create_record data must be an object", f"{at}.data")
        if kind == "webhook" and not _text(item.get("url")):
            problems.add("webhook action missing url", f"{at}.url")
        if kind == "send_event" and not _text(item.get("event")):
            problems.add("send_event action missing event", f"{at}.event")
        actions.append(WorkflowAction(kind, dict(item)))
    return tuple(actions)


def _parse_assignee(raw: object, where: str, problems: _Problems) -> Assignee | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(f"{where}: assignee must be an object", where)
        return None
    kind = _text(raw.get("type"))
    if kind not in ASSIGNEE_TYPES:
        problems.add(f"{where}: invalid assignee type: {kind}", f"{where}.type")
        return None
    key = {"role": "role", "user": "user", "fixed": "user", "relation": "path"}[kind]
    value = raw.get(key)
    if kind == "fixed" and value is None:
        value = raw.get("id")
    if not isinstance(value, str) or not value:
        problems.add(f"{where}: assignee of type {kind} needs {key}", f"{where}.{key}")
        return None
    return Assignee(
        kind,
        role=value if kind == "role" else None,
        user=value if kind in ("user", "fixed") else None,
        path=value if kind == "relation" else None,
    )


def _parse_step(raw: object, index: int, problems: _Problems) -> Step | None:
    where = f"steps[{index}]"
    if not isinstance(raw, Mapping):
        problems.add(f"{where}: a step must be an object", where)
        return None
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not step_id:
        problems.add("step id is required", f"{where}.id")
        return None
    kind = _text(raw.get("type"))
    if kind not in STEP_TYPES:
        problems.add(
            f"invalid step type: {kind} (must be action, condition, or approval)", f"{where}.type"
        )
        return None
    gotos = {  # only the keys present: an absent `on_timeout` fails, an absent `then` ends
        key: _goto(raw.get(key), f"{where}.{key}", problems)
        for key in GOTO_KEYS[kind]
        if key in raw
    }
    expression: Expression | None = None
    actions: tuple[WorkflowAction, ...] = ()
    assignee: Assignee | None = None
    timeout: timedelta | None = None
    if kind == "condition":
        source = raw.get("expression")
        if not isinstance(source, str) or not source.strip():
            problems.add(f"step {step_id}: expression is required", f"{where}.expression")
        else:
            try:
                expression = compile_expression(source)
            except ExpressionError as exc:
                problems.add(f"step {step_id}: invalid expression: {exc}", f"{where}.expression")
    elif kind == "action":
        actions = _parse_actions(raw.get("actions"), f"{where}.actions", problems)
    else:
        assignee = _parse_assignee(raw.get("assignee"), f"{where}.assignee", problems)
        if raw.get("timeout") not in (None, ""):
            timeout = parse_duration(raw.get("timeout"))
            if timeout is None:
                problems.add(
                    f"step {step_id}: invalid timeout: {raw.get('timeout')}"
                    f" (use e.g. 45s, 90m, 1h30m, 2d; at most {MAX_DURATION.days}d)",
                    f"{where}.timeout",
                )
    return Step(step_id, kind, gotos, expression, actions, assignee, timeout)


def _edges(step: Step) -> Iterator[str]:
    for target in step.gotos.values():
        if target is not None:
            yield target


def _spinning_cycle(steps: Mapping[str, Step]) -> list[str] | None:
    """A cycle made only of action and condition steps (nothing in it ever waits), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in _edges(steps[node]):
            other = steps.get(target)
            if other is None or other.type == "approval":
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found is not None:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for step_id, step in steps.items():
        if step.type != "approval" and step_id not in state:
            found = visit(step_id)
            if found is not None:
                return found
    return None


def _unreachable(steps: Sequence[Step], by_id: Mapping[str, Step]) -> list[str]:
    seen = {steps[0].id}
    todo = [steps[0].id]
    while todo:
        for target in _edges(by_id[todo.pop()]):
            if target in by_id and target not in seen:
                seen.add(target)
                todo.append(target)
    return [s.id for s in steps if s.id not in seen]


def parse_workflow(body: object) -> Workflow:
    """A definition from a request body or a stored row; 422 with every problem."""
    if not isinstance(body, Mapping):
        raise MetadataError(["workflow must be a JSON object"])
    problems = _Problems()
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add("workflow name is required", "name")
    raw_trigger = body.get("trigger")
    trigger_map: Mapping[str, Any] = raw_trigger if isinstance(raw_trigger, Mapping) else {}
    kind = trigger_map.get("type")
    if not isinstance(kind, str) or not kind:
        problems.add("trigger type is required", "trigger.type")
    elif kind != "state_change":
        problems.add(f"unsupported trigger type: {kind}", "trigger.type")
    entity = _text(trigger_map.get("entity"))
    if not entity:
        problems.add("trigger entity is required", "trigger.entity")
    trigger_field = _text(trigger_map.get("field"))
    if not trigger_field:
        problems.add("trigger field is required", "trigger.field")
    to = trigger_map.get("to")
    if to is None or isinstance(to, Mapping | list) or to == "":
        problems.add("trigger to is required", "trigger.to")
    raw_context = body.get("context")
    if raw_context is None:
        raw_context = {}
    context: dict[str, str] = {}
    if not isinstance(raw_context, Mapping):
        problems.add("context must be an object of name -> path", "context")
    else:
        for key, path in raw_context.items():
            if not isinstance(path, str) or not path:
                problems.add(f"context.{key}: must be a dot path", f"context.{key}")
            else:
                context[str(key)] = path
    active = body.get("active", True)
    if not isinstance(active, bool):
        problems.add("active must be a boolean", "active")
        active = True
    raw_steps = body.get("steps")
    steps: list[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.add("at least one step is required", "steps")
        raw_steps = []
    for index, raw in enumerate(raw_steps):
        step = _parse_step(raw, index, problems)
        if step is not None:
            steps.append(step)
    by_id: dict[str, Step] = {}
    for step in steps:
        if step.id in by_id:
            problems.add(f"duplicate step id: {step.id}", "steps")
        by_id[step.id] = step
    for step in steps:
        for target in _edges(step):
            if target not in by_id:
                problems.add(f"goto target not found: {target}", f"step {step.id}")
    warnings: list[str] = []
    if not problems.items and steps:
        cycle = _spinning_cycle(by_id)
        if cycle is not None:
            problems.add(
                "cycle without an approval step: " + " -> ".join(cycle) + " (it would run forever)",
                "steps",
            )
        warnings = [f"step {s} is unreachable" for s in _unreachable(steps, by_id)]
    if problems.items:
        raise MetadataError(problems.items)
    assert isinstance(name, str)
    to_text = to if isinstance(to, str) else _state_text(to)
    return Workflow(
        name=name,
        trigger=Trigger("state_change", entity, trigger_field, to_text),
        context=context,
        steps=tuple(steps),
        active=active,
        raw_trigger=dict(trigger_map),
        raw_steps=list(raw_steps),
        warnings=tuple(warnings),
        id=str(body["id"]) if body.get("id") is not None else None,
        _by_id=by_id,
    )


def _state_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def workflow_problems_in(registry: Registry, workflow: Workflow) -> list[ErrorDetail]:
    """What the definition names that the app does not have (entities and fields)."""
    problems: list[ErrorDetail] = []
    trigger = workflow.trigger
    entity = registry.entity(trigger.entity)
    if entity is None:
        problems.append(ErrorDetail(f"unknown entity: {trigger.entity}", "trigger.entity"))
    elif trigger.field not in entity.field_map:
        problems.append(
            ErrorDetail(f"unknown field: {trigger.entity}.{trigger.field}", "trigger.field")
        )
    for step in workflow.steps:
        for action in step.actions:
            if action.type not in ("set_field", "create_record"):
                continue
            name = _text(action.get("entity"))
            target = registry.entity(name)
            if target is None:
                problems.append(ErrorDetail(f"step {step.id}: unknown entity: {name}", step.id))
            elif action.type == "set_field" and _text(action.get("field")) not in target.field_map:
                problems.append(
                    ErrorDetail(
                        f"step {step.id}: unknown field: {name}.{action.get('field')}", step.id
                    )
                )
    return problems
