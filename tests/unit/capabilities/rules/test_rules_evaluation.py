"""Rule evaluation without a database: field operators, the order field -> expression ->
computed, stop_on_fail, all violations together, the environment, related rows."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from rocketd.auth.principal import Principal
from rocketd.capabilities.rules.evaluate import evaluate_rules, field_rule_passes
from rocketd.capabilities.rules.model import (
    FieldRule,
    RelatedLoad,
    Rule,
    compile_pattern,
    parse_rule,
)
from rocketd.engine.record_state import RecordState, decode_record
from rocketd.engine.write.plan import WritePlan
from rocketd.metadata.model import Entity, Field, PrimaryKey, SlugConfig

PK = PrimaryKey("id", "uuid", generated=True)
INVOICE = Entity(
    "invoice",
    "invoices",
    PK,
    (
        Field("id", "uuid"),
        Field("number", "string"),
        Field("slug", "string"),
        Field("status", "string"),
        Field("qty", "int"),
        Field("unit_price", "decimal", precision=2),
        Field("total", "decimal", precision=2),
        Field("count", "int"),
        Field("payment_date", "date"),
        Field("notes", "json"),
        Field("created_at", "timestamp", auto="create"),
    ),
    slug=SlugConfig("slug", "number"),
)
USER = Principal("u-1", ("clerk",))


def state(
    values: dict[str, Any], old: dict[str, Any] | None = None, action: str = "create"
) -> RecordState:
    return RecordState.for_write(INVOICE, action, values, old, USER)


def make(kind: str, priority: int = 0, **definition: Any) -> Rule:
    body = {"entity": "invoice", "hook": "before_write", "type": kind, "definition": definition}
    return parse_rule({**body, "priority": priority})


def field_check(operator: str, value: Any = None) -> FieldRule:
    pattern = compile_pattern(value) if operator == "pattern" else None
    return FieldRule("number", operator, value, pattern)


def passes(operator: str, value: Any, subject_value: Any, action: str = "create") -> bool:
    subject = {} if subject_value is ... else {"number": subject_value}
    return field_rule_passes(field_check(operator, value), subject, action)


def test_min_max_compare_numbers_of_any_kind_and_pass_other_kinds() -> None:
    assert passes("min", 1, 1) and passes("min", 1, Decimal("1.5")) and not passes("min", 1, 0.5)
    assert passes("max", 30, 30) and not passes("max", 30, 31)
    assert not passes("max", 30, "31")  # numeric strings compare by value
    assert passes("min", 1, "abc") and passes("min", 1, True) and passes("min", 1, None)


def test_lengths_count_code_points() -> None:
    assert passes("min_length", 3, "héé") and not passes("min_length", 3, "ab")
    assert passes("max_length", 2, "😀😀") and not passes("max_length", 2, "abc")
    assert passes("min_length", 3, 12)  # not a string: pass


def test_pattern_searches_unanchored_and_gives_up_on_catastrophic_backtracking() -> None:
    assert passes("pattern", "b+", "abbc") and not passes("pattern", "^b", "abc")
    started = time.monotonic()
    assert not passes("pattern", r"^(a+)+$", "a" * 5000 + "!")
    assert time.monotonic() - started < 1


def test_required_and_enum() -> None:
    assert not passes("required", None, ..., "create")
    assert passes("required", None, ..., "update")  # not sent on update: unchanged
    assert not passes("required", None, "", "update") and not passes("required", None, None)
    assert passes("required", True, "x")
    assert passes("enum", ["a", 2], "a") and passes("enum", ["a", 2], Decimal("2.0"))
    assert not passes("enum", ["a", 2], "b") and passes("enum", ["a"], None)


def test_environment_merges_old_and_payload_with_native_values() -> None:
    row_id = uuid.uuid4()
    old = {"id": row_id, "number": "A-1", "status": "draft", "notes": {"a": 1}}
    s = state({"status": "paid", "notes": Jsonb({"b": 2})}, old, "update")
    assert s.record == {"id": str(row_id), "number": "A-1", "status": "paid", "notes": {"b": 2}}
    assert s.old["status"] == "draft" and s.old["id"] == str(row_id)
    assert s.payload == {"status": "paid", "notes": {"b": 2}}
    variables = s.variables()
    assert variables["action"] == "update"
    assert variables["user"] == {"id": "u-1", "roles": ["clerk"]}
    assert variables["now"].tzinfo is not None
    assert state({}).old == {}


def test_field_rules_run_before_expression_rules_and_all_violations_are_reported() -> None:
    rules = [
        make("expression", 0, expression="record.qty > 5", message="too many"),
        make("field", 1, field="number", operator="min_length", value=3),
        make("field", 2, field="qty", operator="max", value=4, message="max 4"),
    ]
    outcome = evaluate_rules(rules, state({"number": "A", "qty": 9}))
    assert [d.to_json() for d in outcome.violations] == [
        {
            "message": "field number failed min_length validation",
            "field": "number",
            "rule": "min_length",
        },
        {"message": "max 4", "field": "qty", "rule": "max"},
        {"message": "too many", "rule": "expression"},
    ]


def test_stop_on_fail_returns_the_violations_collected_so_far() -> None:
    rules = [
        make("field", 0, field="number", operator="required"),
        make("field", 1, field="qty", operator="min", value=1, stop_on_fail=True),
        make("field", 2, field="number", operator="min_length", value=10),
        make("expression", 0, expression="true"),
    ]
    outcome = evaluate_rules(rules, state({"qty": 0}))
    assert [d.rule for d in outcome.violations] == ["required", "min"]


def test_expression_runtime_errors_count_as_failures() -> None:
    outcome = evaluate_rules(
        [make("expression", expression="record.number - 1")], state({"number": "x"})
    )
    (detail,) = outcome.violations
    assert detail.rule == "expression"
    assert detail.message.startswith("rule evaluation error: ")


def test_computed_rules_run_only_when_nothing_failed_and_see_each_other() -> None:
    rules = [
        make("computed", 0, field="total", expression="record.qty * record.unit_price"),
        make("computed", 1, field="count", expression="record.total > 10 ? 2 : 1"),
        make("expression", 0, expression="record.qty < 0", message="negative"),
    ]
    s = state({"qty": 3, "unit_price": Decimal("4.50")})
    assert evaluate_rules(rules, s).violations == []
    assert s.assigned == {"total": Decimal("13.50"), "count": 2}
    assert s.record["total"] == Decimal("13.50")

    failed = state({"qty": -1, "unit_price": Decimal("4.50")})
    outcome = evaluate_rules(rules, failed)
    assert [d.message for d in outcome.violations] == ["negative"]
    assert failed.assigned == {}


def test_computed_values_are_coerced_and_errors_reported_per_field() -> None:
    rules = [
        make("computed", 0, field="count", expression="record.unit_price * 2"),
        make("computed", 1, field="payment_date", expression="'not a date'"),
        make("computed", 2, field="id", expression="'x'"),  # the PK on update: dropped
    ]
    s = state({"unit_price": Decimal("2.25")}, {"id": uuid.uuid4()}, "update")
    outcome = evaluate_rules(rules, s)
    assert [d.to_json() for d in outcome.violations] == [
        {
            "message": "computed value of count must be an integer",
            "field": "count",
            "rule": "computed",
        },
        {
            "message": "computed value of payment_date must be a date (YYYY-MM-DD)",
            "field": "payment_date",
            "rule": "computed",
        },
    ]
    ok = state({"unit_price": Decimal("2.50")})
    assert evaluate_rules(rules[:1], ok).violations == []
    assert ok.assigned == {"count": 5}


def test_assigned_values_reach_the_plan_and_an_explicit_slug_stops_generation() -> None:
    from rocketd.engine.write.plan import SlugRequest

    plan = WritePlan(
        INVOICE, "create", {"number": "A 1"}, SlugRequest("slug", "number", "a-1", "A 1")
    )
    s = state(dict(plan.values))
    s.assign("total", Decimal("3"))
    updated = s.apply_to(plan)
    assert dict(updated.values) == {"number": "A 1", "total": Decimal("3")}
    assert updated.slug == plan.slug
    s.assign("slug", "fixed")
    assert s.apply_to(plan).slug is None
    assert state({}).apply_to(plan) is plan


def test_related_rows_are_exposed_under_the_relation_name() -> None:
    rule = make(
        "expression",
        expression="sum(related.items, 'qty * unit_price') > 100",
        related_load=[{"relation": "items", "filter": {"kind": "goods"}}],
        message="over budget",
    )
    related = {
        RelatedLoad("items", (("kind", "goods"),)): [
            {"qty": 3, "unit_price": Decimal("20.00")},
            {"qty": 1, "unit_price": Decimal("50.00")},
        ]
    }
    assert [d.message for d in evaluate_rules([rule], state({}), related).violations] == [
        "over budget"
    ]
    assert evaluate_rules([rule], state({}), {}).violations == []


def test_decode_record_types_an_encoded_record() -> None:
    record = {
        "total": "12.50",
        "payment_date": "2026-02-01",
        "created_at": "2026-02-01T10:00:00Z",
        "number": "7",
    }
    decoded = decode_record(INVOICE, record)
    assert decoded["total"] == Decimal("12.50")
    assert decoded["payment_date"] == date(2026, 2, 1)
    assert decoded["created_at"] == datetime(2026, 2, 1, 10, tzinfo=UTC)
    assert decoded["number"] == "7"
