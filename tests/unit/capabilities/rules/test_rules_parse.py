"""Parsing and validating rules without a database: shapes, operators, values, patterns,
expressions, and the checks against an app's entities and relations."""

from __future__ import annotations

from typing import Any

import pytest

from rocketd.capabilities.rules.model import (
    ComputedRule,
    ExpressionRule,
    FieldRule,
    RelatedLoad,
    RuleBook,
    new_rule_problems_in,
    parse_rule,
    rule_problems_in,
)
from rocketd.errors import InvalidPayload, ValidationFailed
from rocketd.metadata.model import Entity, Field, PrimaryKey, Relation
from rocketd.metadata.registry import Registry

PK = PrimaryKey("id", "uuid", generated=True)
INVOICE = Entity(
    "invoice",
    "invoices",
    PK,
    (
        Field("id", "uuid"),
        Field("number", "string", required=True),
        Field("status", "string", enum=("draft", "paid")),
        Field("total", "decimal", precision=2),
        Field("payment_date", "date"),
        Field("created_at", "timestamp", auto="create"),
    ),
)
ITEM = Entity(
    "item",
    "items",
    PK,
    (
        Field("id", "uuid"),
        Field("invoice_id", "uuid"),
        Field("qty", "int"),
        Field("unit_price", "decimal", precision=2),
        Field("kind", "string"),
    ),
)
REGISTRY = Registry(
    {"invoice": INVOICE, "item": ITEM},
    {
        "invoice_items": Relation(
            "invoice_items", "one_to_many", "invoice", "item", target_key="invoice_id"
        )
    },
)


def rule(kind: str = "field", hook: str = "before_write", **definition: Any) -> dict[str, Any]:
    return {"entity": "invoice", "hook": hook, "type": kind, "definition": definition}


def problems_of(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_rule(body)
    return [d.message for d in caught.value.details]


def test_field_rule_parses_with_defaults() -> None:
    parsed = parse_rule(rule(field="number", operator="min_length", value=3, message="short"))
    assert parsed.priority == 0 and parsed.active is True and parsed.stop_on_fail is False
    assert parsed.definition == FieldRule("number", "min_length", 3)
    assert parsed.message == "short"
    assert parsed.to_json() == {
        "entity": "invoice",
        "hook": "before_write",
        "type": "field",
        "definition": {"field": "number", "operator": "min_length", "value": 3, "message": "short"},
        "priority": 0,
        "active": True,
    }


def test_expression_and_computed_rules_compile_when_parsed() -> None:
    expression = parse_rule(rule("expression", expression="record.total > 10"))
    assert isinstance(expression.definition, ExpressionRule)
    computed = parse_rule(rule("computed", field="total", expression="1 + 2"))
    assert isinstance(computed.definition, ComputedRule)
    assert computed.definition.field == "total"


def test_required_keys_and_spec_messages() -> None:
    messages = problems_of({"hook": "on_save", "type": "magic", "definition": {}})
    assert "entity is required" in messages
    assert "invalid hook: on_save (must be before_write, before_delete, or after_write)" in messages
    assert "invalid rule type: magic (must be field, expression, or computed)" in messages


def test_unknown_operator_is_rejected() -> None:
    messages = problems_of(rule(field="number", operator="like", value="x"))
    assert messages == [
        "invalid operator: like (must be one of min, max, min_length, max_length, pattern,"
        " required, enum)"
    ]


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("min", "five", "min needs a number as value"),  # "5" is 5 (numeric text, issue 14)
        ("max", True, "max needs a number as value"),
        ("min_length", -1, "min_length needs a non-negative integer as value"),
        ("max_length", 2.5, "max_length needs a non-negative integer as value"),
        ("pattern", 7, "pattern needs a regular expression string as value"),
        ("enum", [], "enum needs a non-empty list of strings or numbers as value"),
        ("enum", [{"a": 1}], "enum needs a non-empty list of strings or numbers as value"),
        ("required", False, "required takes no value (or true)"),
    ],
)
def test_bad_value_types_for_operators_are_rejected(
    operator: str, value: Any, expected: str
) -> None:
    assert problems_of(rule(field="number", operator=operator, value=value)) == [expected]


@pytest.mark.parametrize(
    ("operator", "text", "number"),
    [("min", "0", 0), ("max", "-2.5", -2.5), ("min_length", "3", 3), ("max_length", "40", 40)],
)
def test_numeric_operator_values_sent_as_text_become_numbers(
    operator: str, text: str, number: float
) -> None:
    parsed = parse_rule(rule(field="number", operator=operator, value=text))
    stored = parsed.raw_definition["value"]
    assert stored == number and type(stored) is type(number)
    assert getattr(parsed.definition, "value", None) == number


@pytest.mark.parametrize(
    ("operator", "text"),
    [("min", " 5"), ("min", "1e3"), ("max", "5."), ("min_length", "-1"), ("max_length", "2.5"),
     ("min", "9" * 41)],
)  # fmt: skip
def test_other_text_is_still_refused(operator: str, text: str) -> None:
    assert len(problems_of(rule(field="number", operator=operator, value=text))) == 1


def test_invalid_regex_is_rejected_with_its_position() -> None:
    (message,) = problems_of(rule(field="number", operator="pattern", value="^(abc"))
    assert message.startswith("invalid pattern: ")
    assert "position" in message


def test_expression_that_does_not_compile_is_rejected_with_position() -> None:
    (message,) = problems_of(rule("expression", expression="record.total >"))
    assert message.startswith("invalid expression: ")
    assert "position" in message
    assert "\n" not in message


def test_computed_rules_only_run_before_write() -> None:
    messages = problems_of(rule("computed", hook="after_write", field="total", expression="1"))
    assert any("computed rules run before the write" in m for m in messages)


def test_unknown_definition_keys_are_rejected() -> None:
    messages = problems_of(rule("expression", expression="true", stop_on_failure=True))
    assert messages == [
        'unknown key "stop_on_failure" in definition (did you mean "stop_on_fail"? allowed'
        " keys: expression, field, message, operator, related_load, stop_on_fail, value)"
    ]


def test_wrong_json_types_at_top_level_are_400() -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_rule({**rule(field="number", operator="required"), "priority": "high"})
    assert [d.to_json() for d in caught.value.details] == [
        {"message": "priority must be an integer", "field": "priority", "rule": "type"}
    ]
    with pytest.raises(InvalidPayload):
        parse_rule({**rule(field="number", operator="required"), "colour": "red"})


def test_row_keys_sent_back_are_ignored() -> None:
    body = {**rule(field="number", operator="required"), "id": "x", "created_at": "y"}
    assert parse_rule(body).definition == FieldRule("number", "required")


def test_related_load_is_parsed_and_checked() -> None:
    parsed = parse_rule(
        rule(
            "expression",
            expression="len(related.items) > 3",
            related_load=[{"relation": "items", "filter": {"kind": "goods"}}],
        )
    )
    assert parsed.related_load == (RelatedLoad("items", (("kind", "goods"),)),)
    assert rule_problems_in(REGISTRY, parsed) == []
    bad = parse_rule(
        rule(
            "expression",
            expression="true",
            related_load=[
                {"relation": "payments"},
                {"relation": "items", "filter": {"colour": "red", "qty": "many"}},
            ],
        )
    )
    assert [d.message for d in rule_problems_in(REGISTRY, bad)] == [
        "relation not found from invoice: payments",
        "unknown field: item.colour",
        "item.qty must be an integer",
    ]


def test_rules_on_unknown_entities_and_fields_are_rejected() -> None:
    on_nothing = parse_rule({**rule(field="number", operator="required"), "entity": "ghost"})
    assert [d.message for d in rule_problems_in(REGISTRY, on_nothing)] == [
        "entity not found: ghost"
    ]
    unknown = parse_rule(rule(field="colour", operator="required"))
    (detail,) = rule_problems_in(REGISTRY, unknown)
    assert detail.message.startswith("unknown field: invoice.colour")
    assert detail.field == "definition.field"


def test_computed_rules_on_undeclared_or_engine_managed_fields_are_rejected() -> None:
    for target in ("colour", "id", "created_at"):
        parsed = parse_rule(rule("computed", field=target, expression="1"))
        assert rule_problems_in(REGISTRY, parsed), target
    fine = parse_rule(rule("computed", field="total", expression="1"))
    assert rule_problems_in(REGISTRY, fine) == []


def item_rule(**definition: Any) -> dict[str, Any]:
    return {**rule(**definition), "entity": "item"}


def saving(**definition: Any) -> list[tuple[str, str]]:
    parsed = parse_rule(item_rule(**definition))
    return [(d.field, d.message) for d in new_rule_problems_in(REGISTRY, parsed)]


def test_the_numbers_of_a_rule_being_saved_must_fit_the_field() -> None:
    int_range = "must be between -2147483648 and 2147483647"
    assert saving(field="qty", operator="min", value=1e20) == [
        ("definition.value", f"min 1e+20 is out of range for item.qty (int): {int_range}")
    ]
    assert saving(field="unit_price", operator="max", value=1e20) == [
        (
            "definition.value",
            "max 1e+20 is out of range for item.unit_price (decimal): must have at most 16"
            " digits before the decimal point",
        )
    ]
    assert saving(field="qty", operator="enum", value=[1, 2**40]) == [
        (
            "definition.value[1]",
            f"enum value {2**40} is out of range for item.qty (int): {int_range}",
        )
    ]
    assert saving(field="kind", operator="max_length", value=2**31) == [
        ("definition.value", "max_length must be at most 2147483647")
    ]
    assert saving(field="qty", operator="max", value=0.5) == []  # any number of the range
    assert saving(field="qty", operator="enum", value=["a", 2**31 - 1]) == []
    assert saving(field="kind", operator="min", value=1e300) == []  # text has no range


def test_stored_rules_are_not_held_to_the_ranges() -> None:
    rows = [{"id": "x", **item_rule(field="qty", operator="min", value=1e20)}]
    book = RuleBook.build(REGISTRY, rows)
    assert [r.id for r in book.for_entity("item").before_write] == ["x"]
    assert book.problems == ()


def test_priority_must_fit_its_column() -> None:
    body = {**rule(field="number", operator="required"), "priority": 2**31}
    assert problems_of(body) == ["priority must be between -2147483648 and 2147483647"]
    assert parse_rule({**body, "priority": -(2**31)}).priority == -(2**31)


def test_book_orders_by_priority_groups_by_hook_and_skips_invalid_rows() -> None:
    rows = [
        {"id": "b", "priority": 5, **rule("expression", expression="false")},
        {"id": "a", "priority": 5, **rule("expression", expression="true")},
        {"id": "c", "priority": 1, **rule(field="number", operator="required")},
        {"id": "d", **rule("expression", hook="before_delete", expression="false")},
        {"id": "e", "active": False, **rule("expression", expression="false")},
        {"id": "f", **rule(field="colour", operator="required")},
        {"id": "g", **rule("expression", expression="(((")},
    ]
    book = RuleBook.build(REGISTRY, rows)
    invoice = book.for_entity("invoice")
    assert [r.id for r in invoice.before_write] == ["c", "a", "b"]
    assert [r.id for r in invoice.before_delete] == ["d"]
    assert invoice.after_write == ()
    assert len(book.problems) == 2
    assert book.problems[0].startswith("rule f skipped: unknown field: invoice.colour")
    assert book.problems[1].startswith("rule g skipped: invalid expression")
    assert book.for_entity("item").before_write == ()
