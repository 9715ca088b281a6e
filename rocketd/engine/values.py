"""Field values at the edges of the database: request JSON and query strings in, record JSON out.

`coerce_write_value` turns a value from a request body into a psycopg parameter, strictly per
field type; `coerce_filter_value` does the same for query-string text; `encode_value` turns what
psycopg returns into the contract's JSON encoding (spec README "Value encoding"); `parse_pk` and
`looks_like_pk` read a record id from a URL path. Problems are `ValueProblem`s naming the field
and the expected form; callers turn them into 422 details (writes) or 400s (filters).

This module is pure: no SQL, no I/O, no knowledge of HTTP.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any, Final

from psycopg.types.json import Jsonb

if TYPE_CHECKING:  # annotations only: metadata parsing imports this module
    from rocketd.metadata.model import Entity, Field

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# NUMERIC(18, p) is what the migrator creates for a decimal field with a precision.
DECIMAL_DIGITS: Final = 18
# Plain NUMERIC accepts up to 131072 digits before the point and 16383 after; stay well inside
# so that a hostile "1e999999" is a 4xx here rather than a database error.
DECIMAL_MAX_EXPONENT: Final = 1000

_UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_SIGNED_DIGITS_RE: Final = re.compile(r"-?[0-9]{1,20}")
# In a query string an unencoded "+" arrives as a space: "...10:00:00 02:00" meant "+02:00".
_LOST_PLUS_RE: Final = re.compile(r"(.*[0-9]) ([0-9]{2}(?::?[0-9]{2})?)")

TRUE_SPELLINGS: Final = frozenset({"1", "t", "T", "true", "TRUE", "True"})
FALSE_SPELLINGS: Final = frozenset({"0", "f", "F", "false", "FALSE", "False"})
INT_TYPES: Final = frozenset({"int", "integer", "bigint"})
TEXT_TYPES: Final = frozenset({"string", "text"})
JSON_TYPES: Final = frozenset({"json", "file"})


class ValueProblem(Exception):
    """A value that does not fit its field. `message` names the field ("price must be a decimal
    number"); `expectation` is the same without the field name ("must be a decimal number")."""

    def __init__(self, rule: str, field_name: str, expectation: str) -> None:
        self.rule = rule
        self.field_name = field_name
        self.expectation = expectation
        self.message = f"{field_name} {expectation}"
        super().__init__(self.message)


# --- expectations (shared by write and filter coercion) -------------------------------------


def _int_bounds(field_type: str) -> tuple[int, int]:
    return (INT64_MIN, INT64_MAX) if field_type == "bigint" else (INT32_MIN, INT32_MAX)


def _check_int_range(field: Field, value: int) -> int:
    low, high = _int_bounds(field.base_type)
    if not low <= value <= high:
        raise ValueProblem("range", field.name, f"must be an integer between {low} and {high}")
    return value


def _check_decimal(field: Field, value: Decimal, *, check_width: bool = True) -> Decimal:
    """`value` if it can be stored in (or compared with) the field's NUMERIC column."""
    if not value.is_finite():
        raise ValueProblem("type", field.name, "must be a decimal number")
    if value.is_zero():
        return Decimal(0)  # "0e-99999" is zero; do not send its exponent to PostgreSQL
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite decimals have an int exponent
    if abs(value.adjusted()) > DECIMAL_MAX_EXPONENT or exponent < -DECIMAL_MAX_EXPONENT:
        raise ValueProblem("range", field.name, "is out of range for a decimal")
    scale = field.precision
    if check_width and scale > 0:
        integer_digits = DECIMAL_DIGITS - scale
        # PostgreSQL rounds to the scale first (half away from zero), then checks the width.
        with localcontext() as ctx:
            ctx.prec = DECIMAL_MAX_EXPONENT * 2 + DECIMAL_DIGITS
            rounded = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        if abs(rounded) >= Decimal(10) ** integer_digits:
            raise ValueProblem(
                "range",
                field.name,
                f"must have at most {integer_digits} digits before the decimal point",
            )
    return value


def range_problem(field: Field, number: int | float) -> str | None:
    """Why `number` lies outside what `field`'s column can hold ("must be between ..."), or None;
    only numeric fields have a range. Unlike `coerce_write_value` any number is the right kind:
    a `min` of 0.5 for an int field is in range. Metadata values (rule bounds) are checked with
    it when they are saved."""
    kind = field.base_type
    if kind in INT_TYPES:
        low, high = _int_bounds(kind)
        return None if low <= number <= high else f"must be between {low} and {high}"
    if kind == "float":
        try:
            finite = math.isfinite(float(number))
        except OverflowError:
            finite = False
        return None if finite else "must be a finite number within the range of a float"
    if kind == "decimal":
        try:
            exact = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
            _check_decimal(field, exact)
        except ValueProblem as problem:
            return problem.expectation
    return None


def _decimal_from_text(field: Field, text: str, *, check_width: bool = True) -> Decimal:
    if not _NUMBER_RE.fullmatch(text):
        raise ValueProblem("type", field.name, "must be a decimal number")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        raise ValueProblem("type", field.name, "must be a decimal number") from None
    return _check_decimal(field, value, check_width=check_width)


def _uuid_from_text(field: Field, text: str) -> uuid.UUID:
    if not _UUID_RE.fullmatch(text):
        raise ValueProblem(
            "type", field.name, "must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        )
    return uuid.UUID(text)


def parse_timestamp(text: str) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp (a date alone means midnight) as an aware datetime;
    naive input is UTC. None when the text is not a timestamp."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


def _timestamp_from_text(field: Field, text: str, *, from_query: bool = False) -> datetime:
    parsed = parse_timestamp(text)
    if parsed is None and from_query:
        repaired = _LOST_PLUS_RE.fullmatch(text)
        if repaired:
            parsed = parse_timestamp(f"{repaired.group(1)}+{repaired.group(2)}")
    if parsed is None:
        raise ValueProblem(
            "type", field.name, "must be an RFC 3339 timestamp (e.g. 2026-02-22T10:15:30Z)"
        )
    return parsed


def _date_from_text(field: Field, text: str, *, from_query: bool = False) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        # A full timestamp: keep the calendar date as written (no shift to UTC).
        return _timestamp_from_text(field, text, from_query=from_query).date()
    except ValueProblem:
        raise ValueProblem("type", field.name, "must be a date (YYYY-MM-DD)") from None


def _check_text(field: Field, value: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here avoids a database error (500).
    if "\x00" in value:
        raise ValueProblem("type", field.name, "must not contain NUL characters")
    return value


def _json_has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _json_has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_json_has_nul(v) for v in value)
    return False


# --- request bodies ----------------------------------------------------------------------------


def coerce_write_value(field: Field, value: Any) -> Any:
    """A JSON value from a request body -> a psycopg parameter for `field`'s column.

    None stays None (required-ness is checked by the caller). Raises `ValueProblem` with rule
    "type" (wrong kind of value) or "range" (right kind, does not fit the column).
    Already-typed Python values (UUID, datetime, date, Decimal) are accepted too, so system
    writes can pass what they read.
    """
    if value is None:
        return None
    kind = field.base_type
    if kind in TEXT_TYPES:
        if not isinstance(value, str):
            raise ValueProblem("type", field.name, "must be a string")
        return _check_text(field, value)
    if kind in INT_TYPES:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueProblem("type", field.name, "must be an integer")
        return _check_int_range(field, value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueProblem("type", field.name, "must be a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ValueProblem("range", field.name, "must be a finite number")
        return number
    if kind == "decimal":
        if isinstance(value, bool):
            raise ValueProblem("type", field.name, "must be a decimal number")
        if isinstance(value, Decimal):
            return _check_decimal(field, value)
        if isinstance(value, int):
            return _check_decimal(field, Decimal(value))
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueProblem("type", field.name, "must be a decimal number")
            # repr() is the shortest text that round-trips: 19.9 stays 19.9, not 19.899999...
            return _check_decimal(field, Decimal(repr(value)))
        if isinstance(value, str):
            return _decimal_from_text(field, value)
        raise ValueProblem("type", field.name, "must be a decimal number")
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueProblem("type", field.name, "must be true or false")
        return value
    if kind == "uuid":
        if isinstance(value, uuid.UUID):
            return value
        if not isinstance(value, str):
            raise ValueProblem(
                "type", field.name, "must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
            )
        return _uuid_from_text(field, value)
    if kind == "timestamp":
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if not isinstance(value, str):
            raise ValueProblem(
                "type", field.name, "must be an RFC 3339 timestamp (e.g. 2026-02-22T10:15:30Z)"
            )
        return _timestamp_from_text(field, value)
    if kind == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if not isinstance(value, str):
            raise ValueProblem("type", field.name, "must be a date (YYYY-MM-DD)")
        return _date_from_text(field, value)
    if kind == "json":
        if isinstance(value, Jsonb):
            return value
        if _json_has_nul(value):
            raise ValueProblem("type", field.name, "must not contain NUL characters")
        return Jsonb(value)
    if kind == "file":
        if isinstance(value, Jsonb):
            return value
        if isinstance(value, str):
            raise ValueProblem(
                "type",
                field.name,
                "must be a file object; file ids are resolved by the files API before this point",
            )
        if not isinstance(value, dict):
            raise ValueProblem("type", field.name, "must be a file object")
        if _json_has_nul(value):
            raise ValueProblem("type", field.name, "must not contain NUL characters")
        return Jsonb(value)
    # Unknown types are TEXT columns (metadata.md: "anything else -> TEXT").
    if not isinstance(value, str):
        raise ValueProblem("type", field.name, "must be a string")
    return _check_text(field, value)


# --- query strings -----------------------------------------------------------------------------


def coerce_filter_value(field: Field, raw: str) -> Any:
    """Query-string text -> a psycopg parameter comparable with `field`'s column.

    Surrounding whitespace is ignored for every type except string/text (compared verbatim).
    Decimals stay exact (`Decimal`). Raises `ValueProblem`.
    """
    kind = field.base_type
    if kind in TEXT_TYPES:
        return _check_text(field, raw)
    if kind in JSON_TYPES:
        raise ValueProblem(
            "type", field.name, f"cannot be filtered ({kind} fields are not comparable)"
        )
    text = raw.strip()
    if kind in INT_TYPES:
        if not _INT_RE.fullmatch(text):
            raise ValueProblem("type", field.name, "must be an integer")
        if len(text) > 21:  # longer than any int64 literal; spare int() a huge conversion
            low, high = _int_bounds(kind)
            raise ValueProblem("range", field.name, f"must be an integer between {low} and {high}")
        return _check_int_range(field, int(text))
    if kind == "float":
        if not _NUMBER_RE.fullmatch(text):
            raise ValueProblem("type", field.name, "must be a number")
        number = float(text)
        if not math.isfinite(number):
            raise ValueProblem("range", field.name, "must be a finite number")
        return number
    if kind == "decimal":
        # Only the magnitude limits apply: comparing with a wider number is fine.
        return _decimal_from_text(field, text, check_width=False)
    if kind == "boolean":
        if text in TRUE_SPELLINGS:
            return True
        if text in FALSE_SPELLINGS:
            return False
        raise ValueProblem("type", field.name, "must be true or false (1, t, true / 0, f, false)")
    if kind == "uuid":
        return _uuid_from_text(field, text)
    if kind == "timestamp":
        return _timestamp_from_text(field, text, from_query=True)
    if kind == "date":
        return _date_from_text(field, text, from_query=True)
    return _check_text(field, raw)


# --- database values -> JSON -------------------------------------------------------------------


def _encode_uuid(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def _encode_decimal(value: Any) -> Any:
    # format "f" never switches to exponent notation (str(Decimal("1E-7")) would).
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _encode_timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        # isoformat() omits the fraction when microseconds are zero, as the contract wants.
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00Z"
    return value


def _encode_date(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


# Types whose psycopg value already is its JSON value map to None (no per-value work).
_ENCODERS: Final[dict[str, Callable[[Any], Any]]] = {
    "uuid": _encode_uuid,
    "decimal": _encode_decimal,
    "timestamp": _encode_timestamp,
    "date": _encode_date,
}


def encoder_for(field_type: str) -> Callable[[Any], Any] | None:
    """The non-None value encoder of a field type, or None when values pass through unchanged."""
    return _ENCODERS.get(field_type)


def encode_value(field_type: str, value: Any) -> Any:
    """A value read from the database -> its JSON form (spec README "Value encoding")."""
    if value is None:
        return None
    encode = _ENCODERS.get(field_type)
    return value if encode is None else encode(value)


# --- record ids in URL paths ---------------------------------------------------------------------


def looks_like_pk(entity: Entity, raw: str) -> bool:
    """Spec "Slugs/Lookup": uuid keys look like canonical UUIDs, integer keys like digits, string
    keys never look like a key (the slug is tried first)."""
    kind = entity.primary_key.type
    if kind == "uuid":
        return _UUID_RE.fullmatch(raw) is not None
    if kind in INT_TYPES:
        return _DIGITS_RE.fullmatch(raw) is not None
    return False


def parse_pk(entity: Entity, raw: str) -> Any | None:
    """The path id as a parameter for the PK column, or None when it cannot be a value of that
    column (so the lookup can answer 404 without a database error)."""
    field = entity.pk
    kind = field.base_type
    if kind == "uuid":
        return uuid.UUID(raw) if _UUID_RE.fullmatch(raw) else None
    if kind in INT_TYPES:
        if not _SIGNED_DIGITS_RE.fullmatch(raw):
            return None
        number = int(raw)
        low, high = _int_bounds(kind)
        return number if low <= number <= high else None
    if kind in TEXT_TYPES:
        return None if "\x00" in raw else raw
    if kind in JSON_TYPES:
        return None
    try:
        return coerce_filter_value(field, raw)
    except ValueProblem:
        return None
