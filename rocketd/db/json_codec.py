"""JSON encoding through orjson: psycopg's JSON dumping, for every connection of the process, and
`encode`, which the API's responses and the schema export share.

psycopg dumps `Json`/`Jsonb` parameters with the standard library's `json` by default; orjson is
several times faster, which matters on hot write paths (an outbox row carries the whole record,
a workflow instance its context). orjson refuses integers beyond 64 bits, and jsonb hands them
out: it keeps numbers as exact decimals, so a `1e20` stored in a JSON value or in metadata
reads back as the integer 100000000000000000000. `encode` writes those exactly instead of
failing. Decimals become strings and sets lists, as in the API's responses. Loading stays with
the standard library: orjson reads an integer beyond 64 bits as a float, which would change a
stored value.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import orjson
from psycopg.types.json import set_json_dumps

_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1  # orjson writes unsigned 64-bit integers too


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _exact_big_integers(value: Any) -> Any:
    """`value` with every integer orjson cannot write replaced by its exact digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        return orjson.Fragment(str(value).encode())
    if isinstance(value, dict):
        return {key: _exact_big_integers(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_exact_big_integers(item) for item in value]
    return value


def encode(
    value: Any, *, default: Callable[[Any], Any] | None = None, option: int | None = None
) -> bytes:
    """`orjson.dumps(value, default=..., option=...)`, except that integers beyond 64 bits are
    written with all their digits instead of failing (only then is `value` walked)."""
    try:
        return orjson.dumps(value, default=default, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(_exact_big_integers(value), default=default, option=option)


def dumps(value: Any) -> bytes:
    return encode(value, default=_default, option=_OPTIONS)


def install() -> None:
    """Make `dumps` psycopg's JSON dump function, process-wide (idempotent)."""
    set_json_dumps(dumps)
