"""Validation rules: the typed model, parsing and validation, and the RuleBook.

`parse_rule` reads an admin body (or a stored row) on its own: wrong JSON types of the top-level
keys are 400 `INVALID_PAYLOAD` (`InvalidPayload`), everything else is one 422 `MetadataError`
listing every problem (unknown operators, bad `value` types, invalid regexes, expressions that do
not compile, ...). `rule_problems_in` checks a parsed rule against an app's entities and relations
(fields exist, computed targets are writable, ...). `RuleBook.build` turns the stored rows into the
frozen per-entity book the write pipeline reads; rows that no longer fit the metadata are skipped
and listed in `problems`. (State machines have their own model: capabilities/state_machines.)

Expressions are compiled here, once, with `rocketd.expressions`; nothing here touches the
database or knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import regex

from rocketd.errors import ErrorDetail
from rocketd.expressions import Expression, patterns
from rocketd.metadata.definitions import (
    check_body,
    compile_checked,
    computed_writable,
    field_name_of,
    is_number,
    literal_problem,
    load_row,
    message_of,
)
from rocketd.metadata.field_types import (
    INT32_MAX,
    INT32_MIN,
    range_problem,
)
from rocketd.metadata.parse import Problems, check_keys, is_blank, join_path
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

# Keys of the admin bodies. `id`, `created_at` and `updated_at` are what GET returns: a client
# that sends a row back unchanged is accepted (they are ignored; the URL names the row).
RULE_KEYS: Final = frozenset({"entity", "hook", "type", "definition", "priority", "active"})
RULE_DEFINITION_KEYS: Final = frozenset(
    {"field", "operator", "value", "expression", "message", "stop_on_fail", "related_load"}
)
RELATED_LOAD_KEYS: Final = frozenset({"relation", "filter"})


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


# ---------------------------------------------------------------------------------- parsing


def compile_pattern(source: str) -> regex.Pattern[str]:
    """A `pattern` rule's regex (Python syntax), within the pattern limits; raises
    `patterns.PatternError`."""
    return patterns.compile_pattern(source)


def parse_rule(data: object) -> Rule:
    """An admin body or stored row as a `Rule` (400 for wrong JSON types, 422 for the rest)."""
    body = check_body(
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
    problems = Problems()
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
    check_keys(definition, RULE_DEFINITION_KEYS, "definition", "definition", problems)
    message = message_of(definition, "definition", problems)
    stop = definition.get("stop_on_fail")
    if stop is not None and not isinstance(stop, bool):
        problems.add("definition.stop_on_fail", "definition.stop_on_fail must be true or false")
    related = _parse_relatedload_row(definition.get("related_load"), problems)
    parsed: RuleDefinition | None = None
    if rule_type == "field":
        parsed = _parse_field_rule(definition, problems)
    elif rule_type == "expression":
        expression = compile_checked(
            definition.get("expression"), "definition.expression", problems
        )
        parsed = ExpressionRule(expression) if expression is not None else None
    elif rule_type == "computed":
        target = field_name_of(definition, "field", "definition", problems, "the field to compute")
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
    if isinstance(parsed, FieldRule) and "value" in definition:
        definition = {**definition, "value": parsed.value}  # stored as parsed: "40" becomes 40
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


_DECIMAL_TEXT: Final = regex.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_COUNT_TEXT: Final = regex.compile(r"[0-9]+")
_NUMBER_TEXT_LIMIT: Final = 40  # longer digit strings stay text (and are refused)


def _number_from_text(value: object, form: regex.Pattern[str]) -> object:
    """A numeric operator's value sent as text (`"0"`, `"2.5"`: what existing Rocket admin
    clients send, and the older Express accepted) as the number it spells; anything else as it
    is, for the type check that follows."""
    if not isinstance(value, str) or len(value) > _NUMBER_TEXT_LIMIT or not form.fullmatch(value):
        return value
    return float(value) if "." in value else int(value)


def _parse_field_rule(definition: Mapping[str, Any], problems: Problems) -> FieldRule | None:
    target = field_name_of(definition, "field", "definition", problems, "the field to check")
    operator = definition.get("operator")
    if is_blank(operator):
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
        value = _number_from_text(value, _DECIMAL_TEXT)
        if not is_number(value):
            problems.add(where, f"{operator} needs a number as value")
    elif operator in ("min_length", "max_length"):
        value = _number_from_text(value, _COUNT_TEXT)
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
            isinstance(v, str) or is_number(v) or isinstance(v, bool) for v in value
        )
        if not scalars or not value:
            problems.add(where, "enum needs a non-empty list of strings or numbers as value")
    return FieldRule(target, operator, value, pattern)


def _parse_relatedload_row(raw: object, problems: Problems) -> tuple[RelatedLoad, ...]:
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
        check_keys(item, RELATED_LOAD_KEYS, where, where, problems)
        relation = item.get("relation")
        if not isinstance(relation, str) or not relation:
            problems.add(join_path(where, "relation"), f"{where}.relation is required")
            continue
        raw_filter = item.get("filter")
        if raw_filter is None:
            raw_filter = {}
        if not isinstance(raw_filter, dict) or not all(
            value is None or isinstance(value, str | bool) or is_number(value)
            for value in raw_filter.values()
        ):
            problems.add(
                join_path(where, "filter"),
                f"{where}.filter must be an object of field -> string, number, boolean or null",
            )
            continue
        loads.append(RelatedLoad(relation, tuple(sorted(raw_filter.items()))))
    return tuple(loads)


# ----------------------------------------------------------------- validation in context


def rule_problems_in(registry: Registry, rule: Rule) -> list[ErrorDetail]:
    """Problems `rule` has with the app's entities and relations."""
    problems = Problems()
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
                join_path(where, "relation"),
                f"relation not found from {entity.name}: {load.relation}",
            )
            continue
        for name, value in load.filter:
            target = other.field_map.get(name)
            if target is None:
                problems.add(
                    join_path(where, f"filter.{name}"), f"unknown field: {other.name}.{name}"
                )
                continue
            if target.base_type in ("json", "file"):
                problems.add(
                    join_path(where, f"filter.{name}"),
                    f"{other.name}.{name} is a {target.type} field and cannot be filtered",
                )
                continue
            problem = literal_problem(target, value)
            if problem is not None:
                problems.add(join_path(where, f"filter.{name}"), f"{other.name}.{problem}")
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
    problems = Problems()
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
            problem = range_problem(target, item) if is_number(item) else None
            if problem:
                problems.add(
                    f"{where}[{index}]",
                    f"enum value {item} is out of range for {entity.name}.{target.name}"
                    f" ({target.type}): {problem}",
                )
    return problems.details


# --------------------------------------------------------------------------------- the book


@dataclass(frozen=True)
class EntityRules:
    """The active rules of one entity, by hook, in evaluation order."""

    before_write: tuple[Rule, ...] = ()
    after_write: tuple[Rule, ...] = ()
    before_delete: tuple[Rule, ...] = ()

    def for_hook(self, hook: str) -> tuple[Rule, ...]:
        rules: tuple[Rule, ...] = getattr(self, hook)
        return rules


NO_RULES: Final = EntityRules()


@dataclass(frozen=True)
class RuleBook:
    """Every active rule of an app, by entity, compiled once per reload."""

    entities: Mapping[str, EntityRules] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def for_entity(self, name: str) -> EntityRules:
        return self.entities.get(name, NO_RULES)

    @classmethod
    def build(
        cls,
        registry: Registry,
        rule_rows: Iterable[Mapping[str, Any]],
    ) -> RuleBook:
        """A book from stored rows (`id`, `entity`, ..., `definition`). Never raises: a row that
        no longer parses or fits the metadata is skipped and described in `problems`."""
        problems: list[str] = []
        rules: dict[str, dict[str, list[Rule]]] = {}
        for row in rule_rows:
            rule = load_row(parse_rule, rule_problems_in, registry, row, "rule", problems)
            if rule is not None and rule.active:
                rules.setdefault(rule.entity, {}).setdefault(rule.hook, []).append(rule)
        entities: dict[str, EntityRules] = {}
        for name in sorted(rules):
            hooks = rules.get(name, {})

            def ordered(hook: str, hooks: dict[str, list[Rule]] = hooks) -> tuple[Rule, ...]:
                return tuple(sorted(hooks.get(hook, []), key=lambda r: (r.priority, r.id)))

            entities[name] = EntityRules(
                before_write=ordered("before_write"),
                after_write=ordered("after_write"),
                before_delete=ordered("before_delete"),
            )
        return cls(MappingProxyType(entities), tuple(problems))


EMPTY_RULE_BOOK: Final = RuleBook()
