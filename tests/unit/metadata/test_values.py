"""Value coercion (request JSON and query strings -> parameters), encoding (DB -> JSON) and
path-id parsing, per field type."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from rocketd.metadata.field_types import (
    ValueProblem,
    coerce_filter_value,
    coerce_write_value,
    encode_value,
    looks_like_pk,
    parse_pk,
)
from rocketd.metadata.model import Entity, Field, PrimaryKey, SlugConfig

U = "7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60"


def f(type_: str, name: str = "v", precision: int = 0) -> Field:
    return Field(name, type_, precision=precision)


def problem(call: Any, *args: Any) -> ValueProblem:
    with pytest.raises(ValueProblem) as info:
        call(*args)
    return info.value


# --- writes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("string", "héllo", "héllo"),
        ("text", "", ""),
        ("int", 42, 42),
        ("integer", -(2**31), -(2**31)),
        ("bigint", 2**63 - 1, 2**63 - 1),
        ("float", 3, 3.0),
        ("float", 2.5, 2.5),
        ("decimal", "19.90", Decimal("19.90")),
        ("decimal", 19.9, Decimal("19.9")),
        ("decimal", 7, Decimal(7)),
        ("decimal", "-1e3", Decimal("-1e3")),
        ("boolean", False, False),
        ("uuid", U.upper(), uuid.UUID(U)),
        ("date", "2026-02-22", date(2026, 2, 22)),
        ("date", "2026-02-22T23:30:00-05:00", date(2026, 2, 22)),
    ],
)
def test_write_values_of_the_right_kind_are_accepted(type_: str, value: Any, expected: Any) -> None:
    result = coerce_write_value(f(type_), value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-22T10:15:30Z", datetime(2026, 2, 22, 10, 15, 30, tzinfo=UTC)),
        ("2026-02-22T10:15:30.5+02:00", datetime(2026, 2, 22, 8, 15, 30, 500000, tzinfo=UTC)),
        ("2026-02-22T10:15:30", datetime(2026, 2, 22, 10, 15, 30, tzinfo=UTC)),  # naive = UTC
        ("2026-02-22", datetime(2026, 2, 22, tzinfo=UTC)),
    ],
)
def test_write_timestamps_become_aware_datetimes(text: str, expected: datetime) -> None:
    result = coerce_write_value(f("timestamp"), text)
    assert result == expected and result.tzinfo is not None


@pytest.mark.parametrize(
    ("type_", "value", "rule", "message"),
    [
        ("string", 5, "type", "v must be a string"),
        ("string", "a\x00b", "type", "v must not contain NUL characters"),
        ("int", True, "type", "v must be an integer"),
        ("int", 1.0, "type", "v must be an integer"),
        ("int", "1", "type", "v must be an integer"),
        ("int", 2**31, "range", "v must be an integer between -2147483648 and 2147483647"),
        ("bigint", -(2**63) - 1, "range", None),
        ("float", "1.5", "type", "v must be a number"),
        ("float", True, "type", "v must be a number"),
        ("float", float("nan"), "range", "v must be a finite number"),
        ("float", 10**400, "range", "v must be a finite number"),
        ("decimal", "abc", "type", "v must be a decimal number"),
        ("decimal", "NaN", "type", "v must be a decimal number"),
        ("decimal", "Infinity", "type", "v must be a decimal number"),
        ("decimal", float("inf"), "type", "v must be a decimal number"),
        ("decimal", True, "type", "v must be a decimal number"),
        ("decimal", [1], "type", "v must be a decimal number"),
        ("decimal", " 1", "type", "v must be a decimal number"),
        ("decimal", "1e999999", "range", None),
        ("boolean", 1, "type", "v must be true or false"),
        ("boolean", "true", "type", "v must be true or false"),
        ("uuid", "not-a-uuid", "type", None),
        ("uuid", U.replace("-", ""), "type", None),
        ("uuid", 12, "type", None),
        ("timestamp", "yesterday", "type", None),
        ("timestamp", 1700000000, "type", None),
        ("date", "22/02/2026", "type", "v must be a date (YYYY-MM-DD)"),
        ("date", 20260222, "type", "v must be a date (YYYY-MM-DD)"),
        ("json", {"a": "\x00"}, "type", None),
        ("file", [1], "type", "v must be a file object"),
    ],
)
def test_write_values_of_the_wrong_kind_are_problems(
    type_: str, value: Any, rule: str, message: str | None
) -> None:
    err = problem(coerce_write_value, f(type_), value)
    assert err.rule == rule
    assert err.message.startswith("v ")
    assert err.message == f"v {err.expectation}"
    if message is not None:
        assert err.message == message


def test_write_problem_messages_name_the_field() -> None:
    err = problem(coerce_write_value, Field("price", "decimal", precision=2), "x")
    assert err.message == "price must be a decimal number"
    assert err.field_name == "price"


def test_decimal_must_fit_numeric_18_p() -> None:
    price = f("decimal", "price", precision=2)
    assert coerce_write_value(price, "9999999999999999.99") == Decimal("9999999999999999.99")
    err = problem(coerce_write_value, price, "10000000000000000")
    assert (err.rule, err.message) == (
        "range",
        "price must have at most 16 digits before the decimal point",
    )
    # Rounded to the scale first, as PostgreSQL does: .995 rounds up to 17 integer digits.
    problem(coerce_write_value, price, "9999999999999999.995")
    assert coerce_write_value(price, "9999999999999999.994") == Decimal("9999999999999999.994")
    # Plain NUMERIC (precision 0) has no width limit of ours.
    assert coerce_write_value(f("decimal"), "1" * 40) == Decimal("1" * 40)


def test_decimal_from_float_keeps_the_shortest_form() -> None:
    assert str(coerce_write_value(f("decimal"), 0.1)) == "0.1"


def test_json_and_file_values_are_wrapped_for_jsonb() -> None:
    for value in ({"a": [1, 2]}, [1, "x"], "text", 3, True):
        result = coerce_write_value(f("json"), value)
        assert isinstance(result, Jsonb) and result.obj == value
    assert coerce_write_value(f("json"), None) is None
    cover = coerce_write_value(f("file"), {"id": U, "filename": "a.png"})
    assert isinstance(cover, Jsonb)


def test_file_ids_need_the_files_api() -> None:
    err = problem(coerce_write_value, Field("cover", "file"), U)
    assert err.rule == "type"
    assert "files API" in err.message and err.message.startswith("cover ")


def test_none_stays_none_for_every_type() -> None:
    for type_ in ("string", "int", "bigint", "float", "decimal", "boolean", "uuid", "timestamp"):
        assert coerce_write_value(f(type_), None) is None
    for type_ in ("date", "json", "file", "text", "integer"):
        assert coerce_write_value(f(type_), None) is None


def test_already_typed_values_pass_for_system_writes() -> None:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    assert coerce_write_value(f("timestamp"), ts) is ts
    assert coerce_write_value(f("timestamp"), datetime(2026, 1, 1)).tzinfo is UTC
    assert coerce_write_value(f("uuid"), uuid.UUID(U)) == uuid.UUID(U)
    assert coerce_write_value(f("date"), ts) == date(2026, 1, 1)
    assert coerce_write_value(f("decimal"), Decimal("1.5")) == Decimal("1.5")


# --- filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("int", "42", 42),
        ("integer", " -7 ", -7),
        ("bigint", "9223372036854775807", 2**63 - 1),
        ("float", "2.5", 2.5),
        ("float", "1e3", 1000.0),
        ("decimal", "19.90", Decimal("19.90")),
        ("decimal", "123456789012345678901234.5", Decimal("123456789012345678901234.5")),
        ("uuid", U.upper(), uuid.UUID(U)),
        ("date", "2026-02-22", date(2026, 2, 22)),
        ("string", " spaced ", " spaced "),
        ("text", "", ""),
    ],
)
def test_filter_text_is_coerced_per_type(type_: str, raw: str, expected: Any) -> None:
    result = coerce_filter_value(f(type_), raw)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("raw", ["1", "t", "T", "true", "TRUE", "True"])
def test_filter_true_spellings(raw: str) -> None:
    assert coerce_filter_value(f("boolean"), raw) is True


@pytest.mark.parametrize("raw", ["0", "f", "F", "false", "FALSE", "False"])
def test_filter_false_spellings(raw: str) -> None:
    assert coerce_filter_value(f("boolean"), raw) is False


def test_filter_timestamp_repairs_a_plus_lost_in_the_query_string() -> None:
    expected = datetime(2026, 2, 22, 8, 0, tzinfo=UTC)
    assert coerce_filter_value(f("timestamp"), "2026-02-22T10:00:00+02:00") == expected
    assert coerce_filter_value(f("timestamp"), "2026-02-22T10:00:00 02:00") == expected
    assert coerce_filter_value(f("timestamp"), "2026-02-22 10:00") == datetime(
        2026, 2, 22, 10, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("type_", "raw", "rule"),
    [
        ("int", "abc", "type"),
        ("int", "1.5", "type"),
        ("int", "1_000", "type"),
        ("int", "٣", "type"),  # a non-ASCII digit, which int() would accept
        ("int", "2147483648", "range"),
        ("int", "9" * 5000, "range"),
        ("bigint", "9223372036854775808", "range"),
        ("float", "nan", "type"),
        ("float", "inf", "type"),
        ("float", "1e999", "range"),
        ("decimal", "NaN", "type"),
        ("decimal", "1,5", "type"),
        ("boolean", "yes", "type"),
        ("boolean", "", "type"),
        ("uuid", "123", "type"),
        ("timestamp", "now", "type"),
        ("date", "2026-13-01", "type"),
        ("string", "nul\x00", "type"),
        ("json", "{}", "type"),
        ("file", "x", "type"),
    ],
)
def test_bad_filter_text_is_a_problem(type_: str, raw: str, rule: str) -> None:
    assert problem(coerce_filter_value, f(type_), raw).rule == rule


def test_json_fields_are_not_filterable() -> None:
    err = problem(coerce_filter_value, Field("meta", "json"), "x")
    assert err.expectation == "cannot be filtered (json fields are not comparable)"


# --- encoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("uuid", uuid.UUID(U.upper()), U),
        ("decimal", Decimal("12.50"), "12.50"),
        ("decimal", Decimal("1E-7"), "0.0000001"),
        ("decimal", Decimal("1E+3"), "1000"),
        ("timestamp", datetime(2026, 2, 22, 10, 15, 30, tzinfo=UTC), "2026-02-22T10:15:30Z"),
        (
            "timestamp",
            datetime(2026, 2, 22, 11, 15, 30, 123456, tzinfo=timezone(timedelta(hours=1))),
            "2026-02-22T10:15:30.123456Z",
        ),
        ("timestamp", datetime(2026, 2, 22, 10, 15, 30), "2026-02-22T10:15:30Z"),
        ("date", date(2026, 2, 22), "2026-02-22"),
        ("json", {"a": [1]}, {"a": [1]}),
        ("file", None, None),
        ("int", 5, 5),
        ("bigint", 2**62, 2**62),
        ("float", 1.5, 1.5),
        ("boolean", True, True),
        ("string", "x", "x"),
    ],
)
def test_values_are_encoded_per_the_contract(type_: str, value: Any, expected: Any) -> None:
    assert encode_value(type_, value) == expected


# --- path ids --------------------------------------------------------------------------------------


def entity(pk_type: str, field_type: str | None = None, *, slug: bool = False) -> Entity:
    fields = (Field("id", field_type or pk_type), Field("slug", "string", unique=True))
    return Entity(
        "thing",
        "things",
        PrimaryKey("id", pk_type),
        fields,
        slug=SlugConfig("slug") if slug else None,
    )


def test_parse_pk_per_type() -> None:
    assert parse_pk(entity("uuid"), U) == uuid.UUID(U)
    assert parse_pk(entity("uuid"), "hello") is None
    assert parse_pk(entity("uuid"), U + "0") is None
    assert parse_pk(entity("int"), "123") == 123
    assert parse_pk(entity("int"), "2147483648") is None  # beyond INTEGER: no DB error
    assert parse_pk(entity("bigint"), "2147483648") == 2147483648
    assert parse_pk(entity("bigint"), "9" * 30) is None
    assert parse_pk(entity("int"), "12a") is None
    assert parse_pk(entity("int"), "\uff11\uff12") is None  # full-width digits
    assert parse_pk(entity("string"), "any thing") == "any thing"
    assert parse_pk(entity("string"), "a\x00") is None


def test_looks_like_pk_follows_the_slug_lookup_rule() -> None:
    assert looks_like_pk(entity("uuid"), U.upper())
    assert not looks_like_pk(entity("uuid"), "hello-world")
    assert looks_like_pk(entity("int"), "42")
    assert not looks_like_pk(entity("int"), "-42")
    assert not looks_like_pk(entity("bigint"), "post-42")
    assert not looks_like_pk(entity("string"), "42")


def test_value_text_is_the_one_comparison_form() -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal
    from uuid import UUID

    from rocketd.metadata.field_types import value_text

    cases = [
        (None, ""),
        ("a", "a"),
        (True, "true"),
        (False, "false"),
        (2, "2"),
        (2.0, "2"),
        (2.5, "2.5"),
        (Decimal("2.50"), "2.50"),
        (date(2026, 1, 2), "2026-01-02"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (UUID("0ec26bf9-bda1-4171-8a93-16daf9a8e9b4"), "0ec26bf9-bda1-4171-8a93-16daf9a8e9b4"),
    ]
    assert [value_text(value) for value, _ in cases] == [text for _, text in cases]
    assert value_text({"b": 1, "a": [1, 2.0]}) == '{"a":[1,2.0],"b":1}'
