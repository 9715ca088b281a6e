"""JSON encoding with orjson that never fails on a large integer.

PostgreSQL's jsonb keeps numbers as exact decimals, so a `1e20` stored in a JSON value, or a
float default of `1e308` stored in metadata, is read back as the integer 100000000000000000000
(or a 309-digit one). orjson refuses integers beyond 64 bits; `encode` then writes them with all
their digits. Anyone may use this module (like `errors` and `logging`): psycopg's dump function
(db), the API's responses (http) and the schema export (engine) do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1  # orjson writes unsigned 64-bit integers too


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
