"""The expression language: syntax, operators, functions, methods, nil and truthiness, the
spec's examples and every expression of the upstream example schemas
(rocketd/engine/expressions, spec rules-state-workflows.md section 2)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from rocketd.errors import ValidationFailed
from rocketd.expressions import (
    EvaluationError,
    Expression,
    ExpressionError,
    clear_compile_cache,
    compile_expression,
    truthy,
)
from tests.support.upstream import NAMES, example, upstream_examples

NOW = datetime(2026, 2, 22, 10, 0, tzinfo=UTC)


def ev(source: str, **env: Any) -> Any:
    return compile_expression(source).evaluate(env)


def fails(source: str, **env: Any) -> EvaluationError:
    with pytest.raises(EvaluationError) as info:
        ev(source, **env)
    return info.value


def rejected(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    return info.value


# --- the spec's examples -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "env", "expected"),
    [
        (
            "record.status == 'paid' && record.payment_date == nil",
            {"record": {"status": "paid"}},
            True,
        ),
        (
            "record.status == 'paid' && record.payment_date == nil",
            {"record": {"status": "paid", "payment_date": "2026-01-01"}},
            False,
        ),
        ("action === 'create'", {"action": "create"}, True),
        ("action === 'create'", {"action": "update"}, False),
        (
            "record.status == 'paid' && (old == nil || old.status != 'paid')",
            {"record": {"status": "paid"}, "old": {}},
            True,
        ),
        (
            "record.status == 'paid' && (old == nil || old.status != 'paid')",
            {"record": {"status": "paid"}, "old": {"status": "paid"}},
            False,
        ),
        ("changes.status != null", {"changes": {"status": "paid"}}, True),
        ("changes.status != null", {"changes": {}}, False),
        ("!('admin' in user.roles)", {"user": {"id": "u", "roles": ["agent"]}}, True),
        ("!('admin' in user.roles)", {"user": {"id": "u", "roles": ["admin"]}}, False),
        ("!('admin' in user.roles)", {"user": {}}, True),
        (
            "record.quantity * record.unit_price",
            {"record": {"quantity": 3, "unit_price": Decimal("2.50")}},
            Decimal("7.50"),
        ),
        ("context.days > 5", {"context": {"days": 8}}, True),
        ("context.days > 5", {"context": {"days": 5}}, False),
        (
            "new Date(record.end_date) >= new Date(record.start_date)",
            {"record": {"start_date": "2026-03-10", "end_date": "2026-03-14"}},
            True,
        ),
        (
            "new Date(record.end_date) >= new Date(record.start_date)",
            {"record": {"start_date": date(2026, 3, 10), "end_date": date(2026, 3, 9)}},
            False,
        ),
        ('record.title.startsWith("Draft")', {"record": {"title": "Draft: plans"}}, True),
        ('record.title.startsWith("Draft")', {"record": {"title": "Final"}}, False),
    ],
)
def test_spec_examples_evaluate_as_documented(
    source: str, env: dict[str, Any], expected: Any
) -> None:
    assert ev(source, **env) == expected


# --- the upstream example schemas --------------------------------------------------------------


def _expressions_in(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("expression", "guard", "condition") and isinstance(item, str):
                yield key, item
            else:
                yield from _expressions_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions_in(item)


@upstream_examples
def test_every_expression_of_the_upstream_examples_compiles() -> None:
    found = [source for name in NAMES for _, source in _expressions_in(example(name))]
    assert len(found) >= 7
    for source in found:
        assert isinstance(compile_expression(source), Expression)


@upstream_examples
def test_upstream_webhook_conditions_evaluate_as_intended() -> None:
    for name in NAMES:
        for hook in example(name)["webhooks"]:
            condition = compile_expression(hook["condition"])
            if condition.source == "action === 'create'":
                assert condition.test({"action": "create", "record": {}, "old": {}})
                assert not condition.test({"action": "update", "record": {}, "old": {}})
            else:
                status = condition.source.split("'")[1]  # record.status === '<status>'
                assert condition.test({"action": "update", "record": {"status": status}})
                assert not condition.test({"action": "update", "record": {"status": "draft"}})
                assert not condition.test({"action": "update", "record": {}})


@upstream_examples
def test_upstream_leave_dates_rule_holds_for_every_sample_row_in_both_value_forms() -> None:
    data = example("employee-management")
    (rule,) = [r for r in data["rules"] if r["type"] == "expression"]
    expression = compile_expression(rule["definition"]["expression"])
    rows = data["sample_data"]["leave_request"]
    assert rows
    for row in rows:
        assert expression.test({"record": row, "old": {}, "action": "create"})  # ISO strings
        native = {
            **row,
            "start_date": date.fromisoformat(row["start_date"]),
            "end_date": date.fromisoformat(row["end_date"]),
        }
        assert expression.test({"record": native, "old": {}, "action": "create"})  # dates
        swapped = {**row, "start_date": row["end_date"], "end_date": row["start_date"]}
        if row["start_date"] != row["end_date"]:
            assert not expression.test({"record": swapped})
    # A partial update without the dates: nothing to compare, so false (not an error).
    assert not expression.test({"record": {"reason": "x"}, "old": {}, "action": "update"})


@upstream_examples
def test_upstream_workflow_condition_reads_the_context() -> None:
    data = example("employee-management")
    (step,) = [s for w in data["workflows"] for s in w["steps"] if s["type"] == "condition"]
    condition = compile_expression(step["expression"])
    assert condition.names == {"context"}
    assert condition.test({"context": {"days": 10}})
    assert not condition.test({"context": {"days": 3}})
    assert not condition.test({"context": {"days": None}})


# --- literals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("42", 42),
        ("0", 0),
        ("1.5", Decimal("1.5")),
        ("2e3", Decimal("2e3")),
        ("1.25E-2", Decimal("0.0125")),
        ("'single'", "single"),
        ('"double"', "double"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'a\nb\tc\\d'", "a\nb\tc\\d"),
        (r"'\x41\u00e9\u{1F600}'", "Aé\U0001f600"),
        (r"'\d+'", r"\d+"),  # unknown escapes keep their backslash (regexes)
        ("true", True),
        ("false", False),
        ("nil", None),
        ("null", None),
        ("undefined", None),
        ("[1, 'a', nil]", [1, "a", None]),
        ("[]", []),
        ("[1, 2,]", [1, 2]),
    ],
)
def test_literals(source: str, expected: Any) -> None:
    value = ev(source)
    assert value == expected
    assert type(value) is type(expected)


# --- member and index access -------------------------------------------------------------------


RECORD = {
    "status": "paid",
    "total": Decimal("19.90"),
    "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}],
    "meta": {"tags": ["x", "y"], "owner": {"name": "Ada"}},
    "title": "Draft: plan",
    "id": uuid.UUID("7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60"),
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("record.status", "paid"),
        ("record.meta.owner.name", "Ada"),
        ("record['status']", "paid"),
        ('record["meta"]["owner"]["name"]', "Ada"),
        ("record.lines[0].sku", "a"),
        ("record.lines[1]['qty']", 3),
        ("record.lines[-1].sku", "b"),  # negative indexes count from the end
        ("record.lines[5]", None),
        ("record.meta.tags[0]", "x"),
        ("record.title[0]", "D"),
        ("record.missing", None),
        ("record.missing.deeper.still", None),
        ("old.status", None),
        ("nobody.status", None),
        ("record?.meta?.owner?.name", "Ada"),
        ("record.title.length", 11),
        ("record.lines.length", 2),
        ("record.status.nothing", None),
        ("record.total.value", None),
        ("record.id", "7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60"),
        ("record[nil]", None),
        ("record[1]", None),
        ("nil[0]", None),
    ],
)
def test_member_and_index_access(source: str, expected: Any) -> None:
    assert ev(source, record=RECORD, old={}) == expected


def test_length_of_a_map_is_its_key_named_length() -> None:
    assert ev("record.length", record={"length": 7, "a": 1}) == 7
    assert ev("record.length", record={"a": 1}) is None


def test_a_list_index_must_be_an_integer() -> None:
    assert (
        fails("record.lines['a']", record=RECORD).message
        == "a list index must be an integer, got string"
    )
    assert (
        fails("record.lines[true]", record=RECORD).message
        == "a list index must be an integer, got boolean"
    )


def test_index_expressions_are_evaluated() -> None:
    assert ev("record[key]", record={"a": 1}, key="a") == 1
    assert ev("record.lines[1 + 0 * 5].sku", record=RECORD) == "b"


# --- equality ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 == 1", True),
        ("1 == 1.0", True),
        ("1 === 1.0", True),
        ("a == b", True),  # a int 2, b Decimal 2.00
        ("f == d", True),  # float 0.1 == Decimal 0.1
        ("0.1 + 0.2 == 0.3", True),  # decimal literals are exact
        ("'1' == 1", False),  # no string-number coercion in ==
        ("'a' == 'a'", True),
        ("'a' != 'b'", True),
        ("'a' !== 'a'", False),
        ("nil == nil", True),
        ("nil == 0", False),
        ("nil == ''", False),
        ("nil == false", False),
        ("null === undefined", True),
        ("true == 1", False),
        ("false == 0", False),
        ("true == true", True),
        ("[1, 2] == [1, 2.0]", True),
        ("[1, 2] == [2, 1]", False),
        ("m == n", True),
        ("m == o", False),
    ],
)
def test_equality(source: str, expected: bool) -> None:
    env = {
        "a": 2,
        "b": Decimal("2.00"),
        "f": 0.1,
        "d": Decimal("0.1"),
        "o": {"x": [1], "y": 2},
        "m": {"x": [1]},
        "n": {"x": [1.0]},
    }
    assert ev(source, **env) is expected


def test_equality_of_dates_with_dates_and_iso_strings() -> None:
    env = {
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "paris": datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        "day": date(2026, 1, 2),
    }
    assert ev("at == paris", **env) is True
    assert ev("at == '2026-01-02T03:04:05Z'", **env) is True
    assert ev("'2026-01-02T03:04:05+00:00' == at", **env) is True
    assert ev("day == '2026-01-02'", **env) is True
    assert ev("day == new Date('2026-01-02T00:00:00Z')", **env) is True
    assert ev("at == 'not a date'", **env) is False
    assert ev("at == 5", **env) is False
    assert ev("new Date('2026-01-02') == new Date('2026-01-02')") is True  # by value, unlike JS


def test_uuids_compare_as_strings() -> None:
    value = uuid.UUID("7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60")
    assert ev("id == '7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60'", id=value) is True
    assert ev("id in ['7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60']", id=value) is True
    assert ev("ids[0] == other", ids=[value], other=str(value)) is True


# --- ordering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2.5", True),
        ("2 >= 2.01", False),
        ("d > 19", True),  # Decimal 19.90
        ("d < f", True),  # Decimal 19.90 < float 20.5
        ("'apple' < 'banana'", True),
        ("'b' >= 'a'", True),
        ("'10' > 9", True),  # a numeric-looking string compares by value with a number
        ("9 < ' 10.5 '", True),
        ("'2' > 10", False),
        ("'2' > '10'", True),  # two strings: lexicographic
        ("nil < 1", False),
        ("1 < nil", False),
        ("nil >= nil", False),
        ("missing > 5", False),
        ("at > '2026-01-01'", True),
        ("at < '2026-01-01T00:00:00+01:00'", False),
        ("day >= at", False),
        ("day < at", True),
        ("new Date('2026-01-01T10:00:00+02:00') < new Date('2026-01-01T09:00:00Z')", True),
    ],
)
def test_ordering(source: str, expected: bool) -> None:
    env = {
        "d": Decimal("19.90"),
        "f": 20.5,
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "day": date(2026, 1, 2),
    }
    assert ev(source, **env) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("word < 1", "cannot compare string and number"),
        ("yes < false", "cannot compare boolean and boolean"),
        ("[1] < [2]", "cannot compare list and list"),
        ("at < 'soon'", "cannot compare date and string"),
        ("at < 5", "cannot compare date and number"),
    ],
)
def test_ordering_mismatched_types_is_an_error(source: str, message: str) -> None:
    assert fails(source, at=NOW, word="abc", yes=True).message == message


# --- logic -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true && true", True),
        ("true && false", False),
        ("false || true", True),
        ("false or false", False),
        ("true and true", True),
        ("!true", False),
        ("!nil", True),
        ("not false", True),
        ("not 1 == 2", False),  # (not 1) == 2 -> false == 2 -> false
        ("!(1 == 2)", True),
        ("1 && 'x'", "x"),  # the deciding operand, as in JavaScript
        ("0 || 'fallback'", "fallback"),
        ("'' && 'never'", ""),
        ("nil ?? 'default'", "default"),
        ("0 ?? 'default'", 0),
        ("nil ?? nil ?? 3", 3),
        ("true ? 'a' : 'b'", "a"),
        ("0 ? 'a' : 'b'", "b"),
        ("false ? 1 : true ? 2 : 3", 2),
        ("1 + 1 == 2 ? 'yes' : 'no'", "yes"),
        ("true || false && false", True),  # && binds tighter than ||
        ("false && true || true", True),
    ],
)
def test_logic(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_logic_short_circuits() -> None:
    # The right side would fail (division by zero) if it were evaluated.
    assert ev("false && 1 / x > 0", x=0) is False
    assert ev("true || 1 / x > 0", x=0) is True
    assert ev("1 ?? 1 / x", x=0) == 1
    assert ev("true ? 1 : 1 / x", x=0) == 1
    assert fails("true && 1 / x > 0", x=0).message == "division by zero"


# --- arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2", 3),
        ("7 - 10", -3),
        ("6 * 7", 42),
        ("10 / 4", 2.5),
        ("9 / 3", 3.0),
        ("7 % 3", 1),
        ("-7 % 3", -1),  # sign of the dividend, as in JavaScript and Go
        ("7 % -3", 1),
        ("7.5 % 2", Decimal("1.5")),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("-2 ** 2", -4),
        ("-(2 + 3)", -5),
        ("+4", 4),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),
        ("2 * 3 % 4", 2),
        ("1.1 + 2.2", Decimal("3.3")),
        ("'ab' + 'cd'", "abcd"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("d * 2", Decimal("39.80")),
        ("d + f", 40.4),  # a float meets a decimal: float
        ("i / d", Decimal("0.5025125628140703517587939698492462")),
        ("f - 0.5", 20.0),
        ("f * 2", 41.0),
    ],
)
def test_arithmetic(source: str, expected: Any) -> None:
    value = ev(source, d=Decimal("19.90"), f=20.5, i=10)
    assert value == expected
    assert type(value) is type(expected)


def test_date_difference_is_milliseconds() -> None:
    assert ev("new Date('2026-01-02') - new Date('2026-01-01')") == 86_400_000
    assert ev("(a - b) / 86400000 >= 1", a=date(2026, 1, 3), b=date(2026, 1, 1)) is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x + 1", "cannot add string and number (use string(x) to turn a value into text)"),
        ("1 + x", "cannot add number and string (use string(x) to turn a value into text)"),
        ("n + 1", "cannot add nil and number"),
        ("t + 1", "cannot add boolean and number"),
        ("x * 3", "cannot multiply string and number"),
        ("x - 1", "cannot subtract number from string"),
        ("1 / z", "division by zero"),
        ("1.5 / z", "division by zero"),
        ("1 % z", "modulo by zero"),
        ("-x", "cannot negate string"),
        ("+n", "unary '+' needs a number, got nil"),
        ("x ** 2", "cannot raise string and number"),
        ("(0 - eight) ** 0.5", "'**' has no numeric result for these operands"),
        ("big * big", "result of '*' is too large (more than 4096 bits)"),
    ],
)
def test_arithmetic_errors(source: str, message: str) -> None:
    assert fails(source, x="a", n=None, t=True, z=0, big=2**3000, eight=8).message == message


# --- membership and string operators -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'admin' in roles", True),
        ("'root' in roles", False),
        ("'root' not in roles", True),
        ("2 in [1, 2.0]", True),
        ("'status' in record", True),
        ("'nope' in record", False),
        ("'ell' in 'hello'", True),
        ("'x' in nil", False),
        ("nil in roles", False),
        ("nil in 'abc'", False),
        ("'hello' contains 'ell'", True),
        ("roles contains 'admin'", True),
        ("nil contains 'a'", False),
        ("'hello' startsWith 'he'", True),
        ("'hello' endsWith 'lo'", True),
        ("'hello' endsWith 'he'", False),
        ("nil startsWith 'a'", False),
        ("'abc-123' matches '^[a-z]+-\\\\d+$'", True),
        ("'abc-123' matches '^[a-z]+-\\d+$'", True),  # single backslash works too
        ("'ABC' matches '^[a-z]+$'", False),
        ("'xx abc' matches 'abc'", True),  # unanchored search
        ("nil matches 'a'", False),
        ("record.status matches pattern", True),  # a pattern from the environment
    ],
)
def test_membership_and_string_operators(source: str, expected: bool) -> None:
    env = {"roles": ["admin", "agent"], "record": {"status": "paid"}, "pattern": "^pa"}
    assert ev(source, **env) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("one in five", "'in' needs a list, map or string on its right, got number"),
        ("one in abc", "cannot look for a number in a string"),
        ("one startsWith 'a'", "startsWith needs two strings, got number and string"),
        ("five matches 'a'", "matches needs a string on its left, got number"),
        ("abc matches p", "invalid regular expression: missing ) (character 1 of the pattern)"),
        ("abc matches five", "matches needs a string pattern, got number"),
    ],
)
def test_membership_errors(source: str, message: str) -> None:
    assert fails(source, p="(", one=1, five=5, abc="abc").message == message


# --- methods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("s.startsWith('Dr')", True),
        ("s.endsWith('plan')", True),
        ("s.includes('ft: p')", True),
        ("s.contains('nope')", False),
        ("tags.includes('b')", True),
        ("tags.contains('z')", False),
        ("s.toLowerCase()", "draft: plan"),
        ("s.toUpperCase()", "DRAFT: PLAN"),
        ("'  x  '.trim()", "x"),
        ("s.length", 11),
        ("missing.startsWith('a')", None),  # nil receiver: nil, like member access
        ("!missing.startsWith('a')", True),
        ("new Date('1970-01-01T00:00:01Z').getTime()", 1000),
        ("new Date('2026-02-22').toISOString()", "2026-02-22T00:00:00.000Z"),
        ("at.getTime()", 1771754400000),
        ("'2026-02-22T10:00:00Z'.getTime() == at.getTime()", True),
        ("s.toLowerCase().startsWith('draft')", True),
    ],
)
def test_methods(source: str, expected: Any) -> None:
    assert ev(source, s="Draft: plan", tags=["a", "b"], at=NOW) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("n.startsWith('a')", "startsWith() needs a string, got number"),
        ("s.startsWith(1)", "startsWith needs two strings, got string and number"),
        ("n.includes(1)", "includes() needs a string or list, got number"),
        ("n.toLowerCase()", "toLowerCase() needs a string, got number"),
        ("n.trim()", "trim() needs a string, got number"),
        ("s.getTime()", "getTime(): cannot read 'text' as a date"),
        ("[1].toISOString()", "toISOString() needs a string, number or date, got list"),
    ],
)
def test_method_errors(source: str, message: str) -> None:
    assert fails(source, n=5, s="text").message == message


# --- functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len('héllo')", 5),  # code points
        ("len([1, 2, 3])", 3),
        ("len(record)", 2),
        ("len(nil)", 0),
        ("len(missing)", 0),
        ("abs(-3)", 3),
        ("abs(-2.5)", Decimal("2.5")),
        ("abs(nil)", None),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("min([4, 2, 8])", 2),
        ("max(items)", 8),
        ("min(nil, 5, nil)", 5),
        ("max([])", None),
        ("max('a', 'c', 'b')", "c"),
        ("max(1, 2.5)", Decimal("2.5")),
        ("round(2.5)", 3),
        ("round(-2.5)", -3),  # half away from zero
        ("round(f)", 3),
        ("round(2.345, 2)", Decimal("2.35")),
        ("round(f, 1)", 2.7),
        ("round(7)", 7),
        ("round(nil)", None),
        ("floor(2.7)", 2),
        ("floor(-2.2)", -3),
        ("ceil(2.1)", 3),
        ("ceil(f)", 3),
        ("floor(4)", 4),
        ("lower('ABC')", "abc"),
        ("upper('abc')", "ABC"),
        ("trim('  a b ')", "a b"),
        ("lower(nil)", None),
        ("string(42)", "42"),
        ("string(2.50)", "2.50"),
        ("string(f)", "2.65"),
        ("string(3.0 * 1.0)", "3.00"),
        ("string(x)", "3"),  # float 3.0
        ("string(true)", "true"),
        ("string(nil)", ""),
        ("string(at)", "2026-02-22T10:00:00.000Z"),
        ("string(day)", "2026-02-22"),
        ("'n=' + string(7)", "n=7"),
        ("int('42')", 42),
        ("int(' -7 ')", -7),
        ("int(3.99)", 3),
        ("int(-3.99)", -3),
        ("int('2.5')", 2),
        ("int(nil)", None),
        ("float('2.5')", 2.5),
        ("float(1)", 1.0),
        ("float(nil)", None),
        ("date('2026-02-22') == day", True),
        ("date(day) == '2026-02-22T00:00:00Z'", True),
        ("new Date(0).getTime()", 0),
        ("new Date(nil)", None),
        ("sum([1, 2, 3.5])", Decimal("6.5")),
        ("sum([])", 0),
        ("sum(nil)", 0),
        ("sum([1, nil, 2])", 3),
        ("sum(lines, 'qty * price')", Decimal("7.5")),
        ("sum(lines, 'it.qty')", 3),
        ("sum(lines, 'qty * rate')", 6),  # rate comes from the enclosing environment
        ("sum(lines, 'qty > 1 ? qty : nil')", 2),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    env = {
        "record": {"a": 1, "b": 2},
        "items": [4, 8],
        "f": 2.65,
        "x": 3.0,
        "at": NOW,
        "day": date(2026, 2, 22),
        "rate": 2,
        "lines": [{"qty": 2, "price": Decimal("1.5")}, {"qty": 1, "price": Decimal("4.5")}],
    }
    value = ev(source, **env)
    assert value == expected
    assert type(value) is type(expected)


def test_now_is_the_environment_instant_or_the_current_time() -> None:
    assert ev("now()", now=NOW) == NOW
    assert ev("now", now=NOW) == NOW
    assert ev("new Date()", now=NOW) == NOW
    assert ev("now()", now="2026-02-22T10:00:00Z") == NOW
    before = datetime.now(UTC)
    value = ev("now()")
    assert isinstance(value, datetime)
    assert before <= value <= datetime.now(UTC)
    assert ev("new Date(deadline) < now()", deadline="2000-01-01") is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("len(five)", "len() needs a string, list or map, got number"),
        ("abs(a)", "abs() needs a number, got string"),
        ("round(half, a)", "round(): digits must be an integer, got string"),
        ("round(half, 99)", "round(): digits must be between 0 and 20"),
        ("lower(five)", "lower() needs a string, got number"),
        ("int(abc)", "int() cannot read 'abc' as a number"),
        ("int(yes)", "int() needs a number or a string, got boolean"),
        ("float([1])", "float() needs a number or a string, got list"),
        ("string([1])", "string() cannot convert a list"),
        ("min(one, a)", "cannot compare string and number"),
        ("new Date('soon')", "new Date(): cannot read 'soon' as a date"),
        ("date(yes)", "date() needs a string, number or date, got boolean"),
        ("sum(5)", "sum() needs a list, got number"),
        ("sum(['a'])", "sum(): item 0 gives a string, not a number"),
        ("sum(lines, 'name')", "sum(): item 0 gives a string, not a number"),
        ("floor(inf)", "floor() needs a finite number, got inf"),
    ],
)
def test_function_errors(source: str, message: str) -> None:
    env = {"five": 5, "a": "a", "abc": "abc", "yes": True, "one": 1, "half": 1.5}
    assert fails(source, lines=[{"name": "x"}], inf=float("inf"), **env).message == message


# --- truthiness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (1, True),
        (-1, True),
        (0.0, False),
        (float("nan"), False),
        (0.5, True),
        (Decimal("0.00"), False),
        (Decimal("0.01"), True),
        ("", False),
        ("0", True),
        (" ", True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": None}, True),
        (NOW, True),
        (date(2026, 1, 1), True),
    ],
)
def test_truthiness(value: Any, expected: bool) -> None:
    assert truthy(value) is expected
    assert compile_expression("v").test({"v": value}) is expected


# --- compile errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "position"),
    [
        ("record.status ==", "unexpected end of expression", 16),
        (
            "record.status = 'paid'",
            "'=' is assignment, which is not supported; compare with '=='",
            14,
        ),
        ("(1 + 2", "expected ')' to close '(', found the end of the expression", 6),
        ("1 + 2)", "unexpected ')' (expected an operator or the end of the expression)", 5),
        ("'open", "unterminated string (missing closing ')", 0),
        ("a b", "unexpected 'b' (expected an operator or the end of the expression)", 2),
        ("a && & b", "'&' is not supported; use '&&' (logical and)", 5),
        (
            "a ? b",
            "expected ':' in a conditional 'cond ? a : b', found the end of the expression",
            5,
        ),
        ("record.", "expected a name after '.', found the end of the expression", 7),
        ("record.5", "expected a name after '.', found the number 5", 7),
        (
            "f(x)(y)",
            "unknown function 'f' (available: abs, ceil, date, float, floor, int, len, lower, max, min, now, round, string, sum, trim, upper)",
            0,
        ),
        ("(a)(b)", "only functions and methods can be called", 3),
        ("12abc", "invalid number '12a'", 0),
        ("1 @ 2", "'@' is not supported", 2),
        ("and", "unexpected 'and' (it needs a value on its left)", 0),
        ("a in", "unexpected end of expression", 4),
        (
            "x.foo()",
            "unknown method 'foo()' (available: contains, endsWith, getTime, includes, startsWith, toISOString, toLowerCase, toUpperCase, trim)",
            2,
        ),
        ("len()", "len(x) takes exactly 1 argument (0 given)", 0),
        ("len(a, b)", "len(x) takes exactly 1 argument (2 given)", 0),
        ("now(1)", "now() takes exactly 0 arguments (1 given)", 0),
        ("round(1, 2, 3)", "round(x, digits) takes 1 to 2 arguments (3 given)", 0),
        ("s.startsWith()", "s.startsWith(prefix) takes exactly 1 argument (0 given)", 2),
        ("s.trim(1)", "s.trim() takes exactly 0 arguments (1 given)", 2),
        ("new Date(1, 2)", "new Date(x) takes 0 to 1 arguments (2 given)", 0),
        (
            "sum(items, price)",
            "the second argument of sum() must be a quoted expression, e.g. 'price * quantity'",
            11,
        ),
        ("sum(items, 'price *')", "in sum() item expression: unexpected end of expression", 19),
        (
            "sum(items, 'sum(x)')",
            "in sum() item expression: sum() cannot be used inside a sum() item expression",
            12,
        ),
        (
            "'a' matches '(unclosed'",
            "invalid regular expression: missing ) (character 9 of the pattern)",
            12,
        ),
        ("1 / 0", "division by zero", 2),
        ("'a' + 1", "cannot add string and number (use string(x) to turn a value into text)", 4),
        ("", "expression is empty", 0),
        ("   ", "expression is empty", 0),
    ],
)
def test_compile_errors_name_the_problem_and_its_position(
    source: str, message: str, position: int
) -> None:
    error = rejected(source)
    assert error.message == message
    assert error.position == position


@pytest.mark.parametrize(
    ("source", "message", "position"),
    [
        (r"'\x4'", "invalid \\x escape in string", 1),
        (r"'\u12'", "invalid \\u escape in string", 1),
        (r"'\u{110000}'", "invalid \\u escape in string", 1),
        (r"'\uD800'", "invalid \\u escape in string", 1),
        (r"'\u{'", "invalid \\u escape in string", 1),
        ("'abc\\", "unterminated string (missing closing ')", 0),
        ('"abc', 'unterminated string (missing closing ")', 0),
        ("1.5.2", "expected a name after '.', found the number 2", 4),
        ("caf\u00e9", "unexpected character 'é'", 3),
    ],
)
def test_lexical_errors(source: str, message: str, position: int) -> None:
    error = rejected(source)
    assert (error.message, error.position) == (message, position)


def test_compile_error_text_shows_the_position_with_a_caret() -> None:
    error = rejected("record.total >> 5")
    assert error.message == "unexpected '>'"
    assert error.position == 14
    first, caret = str(error).split("\n")
    assert first == "unexpected '>' at position 14: record.total >> 5"
    assert caret.index("^") == first.index("> 5")


def test_compile_error_excerpt_is_clipped_around_the_position() -> None:
    source = "a + " * 30 + "+ )"
    error = rejected(source)
    first, caret = str(error).split("\n")
    assert "..." in first
    assert len(first) < len(source) + 40
    assert first[caret.index("^")] == source[error.position]


def test_errors_are_422_validation_failures() -> None:
    error = rejected("1 +")
    assert isinstance(error, ValidationFailed)
    assert error.status == 422
    assert (
        error.to_json()["error"]["message"]
        == "invalid expression: unexpected end of expression at position 3"
    )
    runtime = fails("1 + x", x="a")
    assert isinstance(runtime, ValidationFailed)
    assert runtime.status == 422


# --- the API -----------------------------------------------------------------------------------


def test_names_are_the_top_level_variables_read() -> None:
    assert compile_expression(
        "record.status == 'paid' && (old == nil || old.status != 'paid')"
    ).names == {"record", "old"}
    assert compile_expression("1 + 2").names == frozenset()
    assert compile_expression("len(user.roles) > 0 ? now() : now").names == {"user", "now"}
    assert compile_expression("sum(related.lines, 'qty * price')").names == {"related"}
    assert compile_expression("record[key]").names == {"record", "key"}


def test_compiled_expressions_are_cached_by_source_and_equal_by_source() -> None:
    first = compile_expression("record.a + 1")
    assert compile_expression("record.a + 1") is first
    assert first == Expression("record.a + 1", frozenset(), lambda env: None)
    assert {first: 1}[Expression("record.a + 1", frozenset(), lambda env: None)] == 1
    assert "record.a + 1" in repr(first)


def test_clearing_the_cache_compiles_again() -> None:
    first = compile_expression("record.b + 1")
    clear_compile_cache()
    second = compile_expression("record.b + 1")
    assert second is not first
    assert second == first


def test_a_source_that_is_not_a_string_is_a_compile_error() -> None:
    for source in (None, 5, ["record.a"], {"a": 1}):
        with pytest.raises(ExpressionError) as info:
            compile_expression(source)  # type: ignore[arg-type]
        assert info.value.message.startswith("an expression must be a string, got ")


def test_evaluation_does_not_modify_the_environment() -> None:
    env: dict[str, Any] = {"record": {"lines": [1, 2]}, "old": {}}
    snapshot = json.dumps(env)
    ev("record.lines + [3]", **env)
    ev("sum(record.lines, 'it * 2')", **env)
    assert json.dumps(env) == snapshot


def test_list_results_are_fresh_for_every_evaluation() -> None:
    expression = compile_expression("[1, 2]")
    first = expression.evaluate({})
    first.append(3)
    assert expression.evaluate({}) == [1, 2]


def test_environment_may_be_any_mapping() -> None:
    from types import MappingProxyType

    assert compile_expression("record.a == 1").test(
        MappingProxyType({"record": MappingProxyType({"a": 1})})
    )


def test_whitespace_and_newlines_are_insignificant() -> None:
    assert ev("record.a\n  &&\trecord.b", record={"a": 1, "b": 2}) == 2


def test_naive_datetimes_are_read_as_utc() -> None:
    assert ev("a == b", a=datetime(2026, 1, 1, 12), b="2026-01-01T12:00:00Z") is True
