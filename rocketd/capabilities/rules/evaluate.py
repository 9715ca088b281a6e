"""Evaluating validation rules inside the write transaction.

`evaluate_rules` is pure: field rules, then expression rules, then (only when none failed)
computed rules, in priority order, with `stop_on_fail`. `load_related` runs the `related_load`
queries (one per distinct load) and `check_rules` ties it together for the rule stages. This
module raises `ValidationFailed` for violations and never writes anything itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from psycopg.types.numeric import Int8

from rocketd.capabilities.rules.model import (
    ComputedRule,
    ExpressionRule,
    FieldRule,
    RelatedLoad,
    Rule,
)
from rocketd.engine.record_state import (
    RecordState,
    json_value,
    native_value,
)
from rocketd.engine.sql import compose as sc
from rocketd.errors import ErrorDetail, InternalError, ValidationFailed
from rocketd.expressions import EvaluationError, patterns
from rocketd.metadata.definitions import computed_writable
from rocketd.metadata.field_types import (
    INT_TYPES,
    ValueProblem,
    coerce_write_value,
)
from rocketd.metadata.model import Entity, Field
from rocketd.metadata.registry import Registry

# Rows of one `related_load` (lowest primary keys first).
RELATED_LIMIT: Final = 1000

Related = Mapping[RelatedLoad, list[dict[str, Any]]]


# ---------------------------------------------------------------------------- field rules


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):  # numeric strings count, as upstream's Express backend does
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_numeric(a) and _is_numeric(b):
        return _number(a) == _number(b)
    return bool(a == b)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def field_rule_passes(spec: FieldRule, subject: Mapping[str, Any], action: str) -> bool:
    """Spec "Field rules": absent or null passes (except `required`), a value of the wrong kind
    passes; a pattern that times out fails."""
    present = spec.field in subject
    value = subject.get(spec.field)
    operator = spec.operator
    if operator == "required":
        if not present:
            return action != "create"
        return value is not None and value != ""
    if value is None:
        return True
    if operator in ("min", "max"):
        number, bound = _number(value), _number(spec.value)
        if number is None or bound is None:
            return True
        return number >= bound if operator == "min" else number <= bound
    if operator in ("min_length", "max_length"):
        if not isinstance(value, str):
            return True
        length = len(value)  # Unicode code points (spec: RECOMMENDED)
        limit = int(spec.value)
        return length >= limit if operator == "min_length" else length <= limit
    if operator == "pattern":
        if not isinstance(value, str):
            return True
        if spec.pattern is None:
            return False
        try:
            return patterns.search(spec.pattern, value)
        except patterns.PatternTimeout:
            return False
    if operator == "enum":
        return any(_same(value, allowed) for allowed in spec.value)
    return True  # pragma: no cover - operators are checked when the rule is saved


def _field_detail(rule: Rule, spec: FieldRule) -> ErrorDetail:
    message = rule.message or f"field {spec.field} failed {spec.operator} validation"
    return ErrorDetail(message, spec.field, spec.operator)


# -------------------------------------------------------------------------------- related


def related_variable(rule: Rule, related: Related) -> dict[str, list[dict[str, Any]]]:
    return {load.relation: related.get(load, []) for load in rule.related_load}


def _related_statement(
    conn: AsyncConnection[Any], registry: Registry, entity: Entity, load: RelatedLoad
) -> tuple[Entity, bytes, str] | None:
    """(target entity, statement, the record's column whose value is the first parameter)."""
    ref = registry.resolve(entity.name, load.relation)
    target = registry.entity(ref.other) if ref is not None else None
    if ref is None or target is None:
        return None
    relation = ref.relation
    filters = tuple(name for name, _ in load.filter)
    nulls = tuple(name for name, value in load.filter if value is None)
    if ref.forward and relation.many_to_many:
        key_column = entity.primary_key.field
        shape: tuple[Any, ...] = ("rules.related.m2m", relation.name)

        def key_condition() -> sql.Composable:
            return sql.SQL("{} IN (SELECT {} FROM {} WHERE {} = %s)").format(
                sc.ident(target.primary_key.field),
                sc.ident(relation.target_join_key or ""),
                sc.ident(relation.join_table or ""),
                sc.ident(relation.source_join_key or ""),
            )

    else:
        if ref.forward:
            key_column, other_column = entity.primary_key.field, relation.target_key or ""
        else:
            key_column, other_column = relation.target_key or "", relation.source_key
        shape = ("rules.related", other_column)

        def key_condition() -> sql.Composable:
            return sc.condition(other_column)

    def build() -> sql.Composable:
        conditions = [key_condition()]
        conditions += [sc.condition(n, "is_null" if n in nulls else "eq") for n in filters]
        return sc.build_select(
            target, conditions=conditions, order=((target.primary_key.field, False),), limit=True
        )

    statement = sc.entity_sql(target).statements.render((*shape, filters, nulls), conn, build)
    return target, statement, key_column


async def load_related(
    conn: AsyncConnection[Any],
    registry: Registry,
    entity: Entity,
    db_record: Mapping[str, Any],
    loads: Iterable[RelatedLoad],
) -> dict[RelatedLoad, list[dict[str, Any]]]:
    """Each distinct load once: the related rows of the record (native values, at most
    RELATED_LIMIT, lowest primary keys first). A record without the key value has none."""
    loaded: dict[RelatedLoad, list[dict[str, Any]]] = {}
    for load in loads:
        if load in loaded:
            continue
        found = _related_statement(conn, registry, entity, load)
        if found is None:  # the book only holds loads whose relation resolves
            raise InternalError(f"related_load relation not found: {load.relation}")
        target, statement, key_column = found
        key = db_record.get(key_column)
        if key is None:
            loaded[load] = []
            continue
        params: list[Any] = [key]
        for name, value in load.filter:
            if value is not None:
                params.append(coerce_write_value(target.field_map[name], value))
        params.append(Int8(RELATED_LIMIT))
        cursor = conn.cursor(row_factory=tuple_row)
        await cursor.execute(statement, params)
        names = target.output_columns
        loaded[load] = [
            {n: native_value(v) for n, v in zip(names, row, strict=False)}
            for row in await cursor.fetchall()
        ]
    return loaded


# ------------------------------------------------------------------------------ evaluation


@dataclass
class RuleOutcome:
    violations: list[ErrorDetail] = field(default_factory=list)


def _computed_param(target: Field, value: Any) -> Any:
    """An expression result as a DB parameter for `target` (ValueProblem when it does not fit)."""
    kind = target.base_type
    if kind in INT_TYPES and isinstance(value, Decimal | float):
        whole = (
            value == value.to_integral_value() if isinstance(value, Decimal) else value.is_integer()
        )
        if whole:
            value = int(value)
    elif kind == "float" and isinstance(value, Decimal):
        value = float(value)
    elif kind in ("json", "file"):
        value = json_value(value)
    return coerce_write_value(target, value)


def evaluate_rules(
    rules: Sequence[Rule], state: RecordState, related: Related | None = None
) -> RuleOutcome:
    """Spec "Evaluation order": field rules, then expression rules (a failure with
    `stop_on_fail` ends the evaluation), then, only when nothing failed, every computed rule
    (each result is assigned to `state` before the next runs). Pure."""
    related = related or {}
    outcome = RuleOutcome()
    violations = outcome.violations
    for rule in rules:
        spec = rule.definition
        if isinstance(spec, FieldRule) and not field_rule_passes(spec, state.payload, state.action):
            violations.append(_field_detail(rule, spec))
            if rule.stop_on_fail:
                return outcome
    for rule in rules:
        spec = rule.definition
        if not isinstance(spec, ExpressionRule):
            continue
        try:
            violated = spec.expression.test(state.variables(related_variable(rule, related)))
        except EvaluationError as exc:
            violations.append(
                ErrorDetail(f"rule evaluation error: {exc.message}", rule="expression")
            )
        else:
            if not violated:
                continue
            violations.append(
                ErrorDetail(rule.message or "Expression rule violated", rule="expression")
            )
        if rule.stop_on_fail:
            return outcome
    if violations:
        return outcome
    for rule in rules:
        spec = rule.definition
        if not isinstance(spec, ComputedRule):
            continue
        target = state.entity.field_map.get(spec.field)
        try:
            value = spec.expression.evaluate(state.variables(related_variable(rule, related)))
        except EvaluationError as exc:
            message = rule.message or f"computed field {spec.field}: {exc.message}"
            violations.append(ErrorDetail(message, spec.field, "computed"))
            continue
        if target is None or not computed_writable(state.entity, spec.field, state.action):
            continue  # e.g. the primary key on update: dropped, as the spec says
        try:
            param = _computed_param(target, value)
        except ValueProblem as problem:
            message = f"computed value of {spec.field} {problem.expectation}"
            violations.append(ErrorDetail(message, spec.field, "computed"))
            continue
        state.assign(spec.field, param)
    return outcome


def _loads(rules: Iterable[Rule]) -> list[RelatedLoad]:
    return [load for rule in rules for load in rule.related_load]


async def check_rules(
    conn: AsyncConnection[Any], registry: Registry, rules: Sequence[Rule], state: RecordState
) -> None:
    """Load what the rules need, evaluate them, and raise 422 with every violation."""
    if not rules:
        return
    related = await load_related(conn, registry, state.entity, state.db, _loads(rules))
    outcome = evaluate_rules(rules, state, related)
    if outcome.violations:
        raise ValidationFailed(details=outcome.violations)
