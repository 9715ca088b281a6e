"""The built-in functions and methods: their names, arities and implementations.

The parser checks every call against `FUNCTIONS` and `METHODS` (an unknown name or a wrong number
of arguments is a compile error); the evaluator calls `Function.call` / `Method.call`. `now()`,
`new Date()` without an argument and `sum(list, 'expr')` need the environment or a compiled item
expression, so the evaluator implements those itself (their `call` is None).

Functions are forgiving with nil where the answer is obvious (`len(nil)` is 0, `lower(nil)` is
nil) and strict with wrong types (`len(5)` is an error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Final

from rocketd.expressions.errors import EvaluationError
from rocketd.expressions.limits import MAX_COLLECTION, MAX_INT_BITS, MAX_ROUND_DIGITS
from rocketd.expressions.operations import (
    DECIMALS,
    check_string,
    epoch_milliseconds,
    is_list,
    is_number,
    iso_string,
    member_of,
    native,
    number_from_text,
    order,
    string_test,
    to_date,
    type_name,
)


@dataclass(frozen=True)
class Function:
    name: str
    min_args: int
    max_args: int
    call: Callable[..., Any] | None  # None: implemented by the evaluator
    usage: str  # how the documentation and error messages show it
    pure: bool = True  # same arguments, same result: may be folded at compile time


@dataclass(frozen=True)
class Method:
    name: str
    min_args: int
    max_args: int
    call: Callable[..., Any]  # (receiver, *args); never called with a nil receiver
    usage: str


def arity_problem(usage: str, minimum: int, maximum: int, given: int) -> str | None:
    """A readable complaint when `given` arguments do not fit, else None."""
    if minimum <= given <= maximum:
        return None
    if minimum == maximum:
        wanted = f"exactly {minimum} argument{'s' if minimum != 1 else ''}"
    else:
        wanted = f"{minimum} to {maximum} arguments"
    return f"{usage} takes {wanted} ({given} given)"


# --- functions ---------------------------------------------------------------------------------


def length(value: Any) -> int:
    value = native(value)
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise EvaluationError(f"len() needs a string, list or map, got {type_name(value)}")


def absolute(value: Any) -> Any:
    value = _number_or_nil("abs()", value)
    return None if value is None else abs(value)


def minimum(*args: Any) -> Any:
    return _extreme("min()", args, "<")


def maximum(*args: Any) -> Any:
    return _extreme("max()", args, ">")


def _extreme(usage: str, args: tuple[Any, ...], op: str) -> Any:
    """The smallest/largest of the arguments, or of the items of a single list argument;
    nil values are skipped (as SQL does) and nothing left gives nil."""
    values: Any = args
    if len(args) == 1:
        only = native(args[0])
        values = only if is_list(only) else (only,)
    if len(values) > MAX_COLLECTION:
        raise EvaluationError(f"{usage}: list is too long (more than {MAX_COLLECTION} items)")
    best: Any = None
    for raw in values:
        value = native(raw)
        if value is None:
            continue
        if best is None or order(op, value, best):
            best = value
    return best


def round_number(value: Any, digits: Any = 0) -> Any:
    """Half away from zero (as people round, unlike Python's round-half-even). With no digits
    the result is an integer; with digits it keeps the argument's kind (float or decimal)."""
    value = _number_or_nil("round()", value)
    if value is None:
        return None
    if isinstance(digits, bool) or not isinstance(digits, int):
        raise EvaluationError(f"round(): digits must be an integer, got {type_name(digits)}")
    if not 0 <= digits <= MAX_ROUND_DIGITS:
        raise EvaluationError(f"round(): digits must be between 0 and {MAX_ROUND_DIGITS}")
    if isinstance(value, int):
        return value
    exact = _exact(value, "round()")
    quantum = Decimal(1).scaleb(-digits)
    rounded = exact.quantize(quantum, rounding=ROUND_HALF_UP, context=DECIMALS)
    if digits == 0:
        return int(rounded)
    return float(rounded) if isinstance(value, float) else rounded


def floor_number(value: Any) -> Any:
    return _to_integer("floor()", value, ROUND_FLOOR)


def ceil_number(value: Any) -> Any:
    return _to_integer("ceil()", value, ROUND_CEILING)


def _to_integer(usage: str, value: Any, rounding: str) -> int | None:
    value = _number_or_nil(usage, value)
    if value is None or isinstance(value, int):
        return value
    return int(_exact(value, usage).to_integral_value(rounding=rounding, context=DECIMALS))


def _exact(value: float | Decimal, usage: str) -> Decimal:
    """A finite float or decimal of reasonable size as an exact decimal."""
    exact = Decimal(repr(value)) if isinstance(value, float) else value
    if not exact.is_finite():
        raise EvaluationError(f"{usage} needs a finite number, got {value}")
    if exact.adjusted() > 30:
        raise EvaluationError(f"{usage}: {value} is too large")
    return exact


def _number_or_nil(usage: str, value: Any) -> Any:
    value = native(value)
    if value is None or is_number(value):
        return value
    raise EvaluationError(f"{usage} needs a number, got {type_name(value)}")


def lower(value: Any) -> str | None:
    return _text_or_nil("lower()", value, str.lower)


def upper(value: Any) -> str | None:
    return _text_or_nil("upper()", value, str.upper)


def trim(value: Any) -> str | None:
    return _text_or_nil("trim()", value, str.strip)


def _text_or_nil(usage: str, value: Any, change: Callable[[str], str]) -> str | None:
    value = native(value)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvaluationError(f"{usage} needs a string, got {type_name(value)}")
    return check_string(change(value))


def to_string(value: Any) -> str:
    """Text of a scalar: nil is "", booleans are "true"/"false", 3.0 is "3", dates are ISO."""
    value = native(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise EvaluationError(f"string(): integer is too large (more than {MAX_INT_BITS} bits)")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, Decimal):
        if value.is_finite() and abs(value.adjusted()) > 1000:
            return str(value)  # scientific notation rather than a thousand zeros
        return format(value, "f")
    if isinstance(value, datetime):
        return iso_string(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    raise EvaluationError(f"string() cannot convert a {type_name(value)}")


def to_int(value: Any) -> int | None:
    """Numbers truncated toward zero; numeric strings read; nil stays nil."""
    number = _number_from(value, "int()")
    if number is None or isinstance(number, int):
        return number
    return int(_exact(number, "int()").to_integral_value(rounding=ROUND_DOWN, context=DECIMALS))


def to_float(value: Any) -> float | None:
    number = _number_from(value, "float()")
    return None if number is None else float(number)


def _number_from(value: Any, usage: str) -> Any:
    value = native(value)
    if value is None or is_number(value):
        return value
    if isinstance(value, str):
        number = number_from_text(value)
        if number is not None:
            return number
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise EvaluationError(f"{usage} cannot read {shown!r} as a number")
    raise EvaluationError(f"{usage} needs a number or a string, got {type_name(value)}")


def to_date_function(value: Any) -> datetime | None:
    return to_date(value, "date()")


def new_date(value: Any) -> datetime | None:
    return to_date(value, "new Date()")


FUNCTIONS: Final[dict[str, Function]] = {
    f.name: f
    for f in (
        Function("len", 1, 1, length, "len(x)"),
        Function("now", 0, 0, None, "now()", pure=False),
        Function("new Date", 0, 1, None, "new Date(x)", pure=False),
        Function("date", 1, 1, to_date_function, "date(x)"),
        Function("sum", 1, 2, None, "sum(list, 'expr')"),
        Function("abs", 1, 1, absolute, "abs(x)"),
        Function("min", 1, MAX_COLLECTION, minimum, "min(a, b, ...)"),
        Function("max", 1, MAX_COLLECTION, maximum, "max(a, b, ...)"),
        Function("round", 1, 2, round_number, "round(x, digits)"),
        Function("floor", 1, 1, floor_number, "floor(x)"),
        Function("ceil", 1, 1, ceil_number, "ceil(x)"),
        Function("lower", 1, 1, lower, "lower(s)"),
        Function("upper", 1, 1, upper, "upper(s)"),
        Function("trim", 1, 1, trim, "trim(s)"),
        Function("string", 1, 1, to_string, "string(x)"),
        Function("int", 1, 1, to_int, "int(x)"),
        Function("float", 1, 1, to_float, "float(x)"),
    )
}


# --- methods -----------------------------------------------------------------------------------


def _starts_with(receiver: Any, prefix: Any) -> bool:
    _require_string("startsWith()", receiver)
    return string_test("startsWith", receiver, prefix)


def _ends_with(receiver: Any, suffix: Any) -> bool:
    _require_string("endsWith()", receiver)
    return string_test("endsWith", receiver, suffix)


def _includes(receiver: Any, item: Any) -> bool:
    receiver = native(receiver)
    if not (isinstance(receiver, str) or is_list(receiver)):
        raise EvaluationError(f"includes() needs a string or list, got {type_name(receiver)}")
    return member_of(item, receiver)


def _to_lower_case(receiver: Any) -> str:
    return check_string(_require_string("toLowerCase()", receiver).lower())


def _to_upper_case(receiver: Any) -> str:
    return check_string(_require_string("toUpperCase()", receiver).upper())


def _trim(receiver: Any) -> str:
    return _require_string("trim()", receiver).strip()


def _get_time(receiver: Any) -> int:
    instant = to_date(receiver, "getTime()")
    assert instant is not None  # receivers are never nil
    return epoch_milliseconds(instant)


def _to_iso_string(receiver: Any) -> str:
    instant = to_date(receiver, "toISOString()")
    assert instant is not None
    return iso_string(instant)


def _require_string(usage: str, value: Any) -> str:
    value = native(value)
    if not isinstance(value, str):
        raise EvaluationError(f"{usage} needs a string, got {type_name(value)}")
    return value


METHODS: Final[dict[str, Method]] = {
    m.name: m
    for m in (
        Method("startsWith", 1, 1, _starts_with, "s.startsWith(prefix)"),
        Method("endsWith", 1, 1, _ends_with, "s.endsWith(suffix)"),
        Method("includes", 1, 1, _includes, "x.includes(item)"),
        Method("contains", 1, 1, _includes, "x.contains(item)"),
        Method("toLowerCase", 0, 0, _to_lower_case, "s.toLowerCase()"),
        Method("toUpperCase", 0, 0, _to_upper_case, "s.toUpperCase()"),
        Method("trim", 0, 0, _trim, "s.trim()"),
        Method("getTime", 0, 0, _get_time, "d.getTime()"),
        Method("toISOString", 0, 0, _to_iso_string, "d.toISOString()"),
    )
}
