"""JSON responses in the contract's envelopes, encoded with orjson."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from rocketd.json_encoding import encode


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    # `encode`: an integer beyond 64 bits (jsonb gives a stored 1e20 back as one) is written
    # exactly, never a 500.
    return encode(value, default=_default, option=orjson.OPT_UTC_Z)


def json_body(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A response whose body is `payload` as JSON, no envelope added."""
    return web.Response(
        body=dumps(payload), status=status, content_type="application/json", headers=headers
    )


def page(
    records: list[dict[str, Any]], meta: dict[str, int], encoded: list[bytes] | None = None
) -> web.Response:
    """`{"data": [...], "meta": {...}}`; `encoded` holds records already in their JSON form
    (written by PostgreSQL), which are joined as they are."""
    if encoded is None:
        return json_body({"data": records, "meta": meta})
    body = b"".join((b'{"data":[', b",".join(encoded), b'],"meta":', dumps(meta), b"}"))
    return web.Response(body=body, content_type="application/json")


def data(value: Any, status: int = 200) -> web.Response:
    """`{"data": value}`: every single-object and unpaged-list response."""
    return json_body({"data": value}, status)


def message(text: str, status: int = 200) -> web.Response:
    """`{"message": text}`: the contract's envelope-less answers (logout, app delete)."""
    return json_body({"message": text}, status)
