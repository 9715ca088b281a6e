"""psycopg's JSON dumping through orjson, for every connection of the process.

psycopg dumps `Json`/`Jsonb` parameters with the standard library's `json` by default; orjson is
several times faster, which matters on hot write paths (an outbox row carries the whole record,
a workflow instance its context). Integers beyond 64 bits, which orjson refuses, are written
exactly (`rocketd.json_encoding.encode`). Decimals become strings and sets lists, as in the
API's responses. Loading stays with the standard library: orjson reads an integer beyond 64 bits
as a float, which would change a stored value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import orjson
from psycopg.types.json import set_json_dumps

from rocketd.json_encoding import encode

_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    return encode(value, default=_default, option=_OPTIONS)


def install() -> None:
    """Make `dumps` psycopg's JSON dump function, process-wide (idempotent)."""
    set_json_dumps(dumps)
