"""What the operators mean: equality, ordering, arithmetic, membership and truthiness over the
values an environment holds (None, bool, int, float, Decimal, str, list, map, date, datetime;
UUIDs are read as strings).

Pure functions of their operands. Every failure is an `EvaluationError` naming the operand types
("cannot add string and number"); no operator coerces a string to a number except ordering
comparisons, where a numeric-looking string compares by value with a number (stored decimals).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any, Final

from rocketd.expressions.errors import EvaluationError
from rocketd.expressions.limits import MAX_COLLECTION, MAX_INT_BITS, MAX_STRING_LENGTH

# One fixed context, independent of whatever the calling thread's decimal context is.
DECIMALS: Final = Context(
    prec=34, Emax=9999, Emin=-9999, traps=[InvalidOperation, DivisionByZero, Overflow]
)

_NUMERIC_TEXT: Final = re.compile(
    r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?\s*", re.ASCII
)
_INTEGER_TEXT: Final = re.compile(r"[+-]?\d+", re.ASCII)
_ONE_MS: Final = timedelta(milliseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Number = int | float | Decimal


# --- kinds of values ---------------------------------------------------------------------------


def is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def is_date(value: object) -> bool:
    return isinstance(value, date)  # datetime is a date


def type_name(value: object) -> str:
    """The language's name for the kind of `value`, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str | uuid.UUID):
        return "string"
    if is_list(value):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    if is_date(value):
        return "date"
    return f"unsupported value ({type(value).__name__})"


def native(value: Any) -> Any:
    """An environment value as the language sees it: UUIDs become strings."""
    return str(value) if isinstance(value, uuid.UUID) else value


def truthy(value: Any) -> bool:
    """nil, false, 0, NaN, "" and empty lists and maps are false; everything else is true."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, Decimal):
        return not (value.is_zero() or value.is_nan())
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True


# --- dates -------------------------------------------------------------------------------------


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date or timestamp as an aware datetime (UTC when no offset), else None."""
    stripped = text.strip()
    if not 8 <= len(stripped) <= 64:
        return None
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def as_instant(value: Any) -> datetime | None:
    """A date, datetime or ISO string as an aware datetime; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return parse_instant(value)
    return None


def to_date(value: Any, what: str = "new Date()") -> datetime | None:
    """`new Date(x)`: a datetime or date as is (aware), an ISO string parsed, a number as epoch
    milliseconds; nil stays nil. Anything else is an error."""
    value = native(value)
    if value is None:
        return None
    if is_number(value):
        try:
            return _EPOCH + timedelta(milliseconds=float(value))
        except (OverflowError, ValueError):
            raise EvaluationError(f"{what}: {value} milliseconds is out of range") from None
    instant = as_instant(value)
    if instant is None:
        if isinstance(value, str):
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise EvaluationError(f"{what}: cannot read {shown!r} as a date")
        raise EvaluationError(f"{what} needs a string, number or date, got {type_name(value)}")
    return instant


def _instant(value: date) -> datetime:
    instant = as_instant(value)
    assert instant is not None  # a date or datetime always converts
    return instant


def epoch_milliseconds(instant: datetime) -> int:
    return (instant - _EPOCH) // _ONE_MS


def iso_string(instant: datetime) -> str:
    """JavaScript's `toISOString()`: UTC, milliseconds, `Z`."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


# --- equality and ordering ---------------------------------------------------------------------


def equals(a: Any, b: Any) -> bool:
    """`==`: by value across int/float/decimal, dates against dates or ISO strings, lists and
    maps item by item; nil equals only nil; never string-to-number."""
    a, b = native(a), native(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        x, y = _comparable_numbers(a, b)
        return bool(x == y)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if is_date(a) or is_date(b):
        x_instant, y_instant = as_instant(a), as_instant(b)
        return x_instant is not None and x_instant == y_instant
    if is_list(a) and is_list(b):
        _check_collection(a)
        return len(a) == len(b) and all(equals(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        _check_collection(a)
        return a.keys() == b.keys() and all(equals(a[k], b[k]) for k in a)
    return False


def order(op: str, a: Any, b: Any) -> bool:
    """`<`, `<=`, `>`, `>=`. False when either side is nil (never an error)."""
    a, b = native(a), native(b)
    if a is None or b is None:
        return False
    x, y = _orderable(a, b)
    try:
        if op == "<":
            return bool(x < y)
        if op == "<=":
            return bool(x <= y)
        if op == ">":
            return bool(x > y)
        return bool(x >= y)
    except InvalidOperation:  # a decimal NaN orders with nothing
        return False


def _orderable(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, bool) or isinstance(b, bool):
        raise _cannot("compare", a, b)
    a_number, b_number = is_number(a), is_number(b)
    if a_number and b_number:
        return _comparable_numbers(a, b)
    if a_number and isinstance(b, str):
        return _comparable_numbers(a, _number_from_text(b, a))
    if b_number and isinstance(a, str):
        return _comparable_numbers(_number_from_text(a, b), b)
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    if is_date(a) or is_date(b):
        x, y = as_instant(a), as_instant(b)
        if x is None or y is None:
            raise _cannot("compare", a, b)
        return x, y
    raise _cannot("compare", a, b)


def _number_from_text(text: str, other: Any) -> Number:
    number = number_from_text(text)
    if number is None:
        raise _cannot("compare", text, other)
    return number


def number_from_text(text: str) -> int | Decimal | None:
    """The number a numeric-looking string spells ("42", " -1.5 ", "2e3"), else None."""
    if len(text) > 100 or not _NUMERIC_TEXT.fullmatch(text):
        return None
    stripped = text.strip()
    if _INTEGER_TEXT.fullmatch(stripped):
        return int(stripped)
    return Decimal(stripped)


def _comparable_numbers(a: Number, b: Number) -> tuple[Number, Number]:
    # A float meets a decimal through its shortest repr, so 0.1 (float) == 0.1 (decimal).
    if isinstance(a, float) and isinstance(b, Decimal) and math.isfinite(a):
        return Decimal(repr(a)), b
    if isinstance(b, float) and isinstance(a, Decimal) and math.isfinite(b):
        return a, Decimal(repr(b))
    return a, b


# --- membership and string tests ---------------------------------------------------------------


def member_of(item: Any, container: Any) -> bool:
    """`item in container`: list items by `==`, map keys, substrings. False when either is nil."""
    item, container = native(item), native(container)
    if container is None:
        return False
    if isinstance(container, str):
        if item is None:
            return False
        if not isinstance(item, str):
            raise EvaluationError(f"cannot look for a {type_name(item)} in a string")
        return item in container
    if is_list(container):
        _check_collection(container)
        return any(equals(item, candidate) for candidate in container)
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    raise EvaluationError(
        f"'in' needs a list, map or string on its right, got {type_name(container)}"
    )


def string_test(name: str, subject: Any, argument: Any) -> bool:
    """`startsWith`, `endsWith` between strings; a nil subject is false."""
    subject, argument = native(subject), native(argument)
    if subject is None:
        return False
    if not isinstance(subject, str) or not isinstance(argument, str):
        raise EvaluationError(
            f"{name} needs two strings, got {type_name(subject)} and {type_name(argument)}"
        )
    return subject.startswith(argument) if name == "startsWith" else subject.endswith(argument)


# --- arithmetic --------------------------------------------------------------------------------


def add(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:  # the common case, without the general checks
        return a + b
    a, b = native(a), native(b)
    if is_number(a) and is_number(b):
        return _arithmetic("+", a, b)
    if isinstance(a, str) and isinstance(b, str):
        return check_string(a + b) if len(a) + len(b) > MAX_STRING_LENGTH else a + b
    if is_list(a) and is_list(b):
        return check_collection([*a, *b]) if len(a) + len(b) > MAX_COLLECTION else [*a, *b]
    if isinstance(a, str) or isinstance(b, str):
        raise EvaluationError(
            f"cannot add {type_name(a)} and {type_name(b)} (use string(x) to turn a value into text)"
        )
    raise _cannot("add", a, b)


def subtract(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return a - b
    a, b = native(a), native(b)
    if is_number(a) and is_number(b):
        return _arithmetic("-", a, b)
    if is_date(a) and is_date(b):
        # As in JavaScript: the difference of two dates is a number of milliseconds.
        return (_instant(a) - _instant(b)) // _ONE_MS
    raise _cannot("subtract", b, a, verb_order="from")


def multiply(a: Any, b: Any) -> Any:
    a, b = native(a), native(b)
    if is_number(a) and is_number(b):
        if (
            isinstance(a, int)
            and isinstance(b, int)
            and a.bit_length() + b.bit_length() > MAX_INT_BITS
        ):
            raise EvaluationError(f"result of '*' is too large (more than {MAX_INT_BITS} bits)")
        return _arithmetic("*", a, b)
    raise _cannot("multiply", a, b)


def divide(a: Any, b: Any) -> Any:
    a, b = native(a), native(b)
    if is_number(a) and is_number(b):
        if b == 0:
            raise EvaluationError("division by zero")
        return _arithmetic("/", a, b)
    raise _cannot("divide", a, b)


def modulo(a: Any, b: Any) -> Any:
    a, b = native(a), native(b)
    if is_number(a) and is_number(b):
        if b == 0:
            raise EvaluationError("modulo by zero")
        return _arithmetic("%", a, b)
    raise _cannot("take the remainder of", a, b)


def power(a: Any, b: Any) -> Any:
    a, b = native(a), native(b)
    if not (is_number(a) and is_number(b)):
        raise _cannot("raise", a, b)
    if isinstance(a, int) and isinstance(b, int):
        if b < 0:
            if a == 0:
                raise EvaluationError("division by zero")
            return math.pow(a, b)
        if abs(a) > 1 and a.bit_length() * b > MAX_INT_BITS:
            raise EvaluationError(f"result of '**' is too large (more than {MAX_INT_BITS} bits)")
        return a**b
    return _arithmetic("**", a, b)


def negate(value: Any) -> Any:
    if is_number(value):
        return -value
    raise EvaluationError(f"cannot negate {type_name(native(value))}")


def plus(value: Any) -> Any:
    if is_number(value):
        return value
    raise EvaluationError(f"unary '+' needs a number, got {type_name(native(value))}")


def _arithmetic(op: str, a: Number, b: Number) -> Number:
    """Numbers only. int op int stays int (but `/` gives a float, as in JavaScript and expr-lang);
    a decimal with an int stays decimal; a float with a decimal becomes float."""
    try:
        if isinstance(a, Decimal) or isinstance(b, Decimal):
            if isinstance(a, float) or isinstance(b, float):
                return _float_arithmetic(op, float(a), float(b))
            return _decimal_arithmetic(op, Decimal(a), Decimal(b))
        if isinstance(a, float) or isinstance(b, float) or op in ("/", "**"):
            return _float_arithmetic(op, float(a), float(b))
        assert isinstance(a, int) and isinstance(b, int)
        return _int_arithmetic(op, a, b)
    except (ArithmeticError, ValueError) as exc:
        raise EvaluationError(_arithmetic_failure(op, exc)) from None


def _int_arithmetic(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    # "%": the sign of the dividend, as in JavaScript and Go (Python's % follows the divisor).
    remainder = abs(a) % abs(b)
    return -remainder if a < 0 else remainder


def _float_arithmetic(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if op == "%":
        return math.fmod(a, b)
    return math.pow(a, b)


def _decimal_arithmetic(op: str, a: Decimal, b: Decimal) -> Decimal:
    if op == "+":
        return DECIMALS.add(a, b)
    if op == "-":
        return DECIMALS.subtract(a, b)
    if op == "*":
        return DECIMALS.multiply(a, b)
    if op == "/":
        return DECIMALS.divide(a, b)
    if op == "%":
        return DECIMALS.remainder(a, b)
    return DECIMALS.power(a, b)


def _arithmetic_failure(op: str, exc: Exception) -> str:
    if isinstance(exc, ZeroDivisionError | DivisionByZero):
        return "division by zero"
    if isinstance(exc, OverflowError | Overflow):
        return f"result of '{op}' is too large"
    return f"'{op}' has no numeric result for these operands"


# --- bounds ------------------------------------------------------------------------------------


def check_string(value: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise EvaluationError(f"string is too long (more than {MAX_STRING_LENGTH} characters)")
    return value


def check_collection(value: list[Any]) -> list[Any]:
    _check_collection(value)
    return value


def _check_collection(value: Any) -> None:
    if len(value) > MAX_COLLECTION:
        raise EvaluationError(f"{type_name(value)} is too long (more than {MAX_COLLECTION} items)")


def _cannot(verb: str, a: Any, b: Any, verb_order: str = "and") -> EvaluationError:
    return EvaluationError(f"cannot {verb} {type_name(a)} {verb_order} {type_name(b)}")


# The binary operators the evaluator can fold and call directly.
ARITHMETIC: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "%": modulo,
    "**": power,
}
