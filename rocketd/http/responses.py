"""JSON responses in the contract's envelopes, encoded with orjson.

Success bodies are `{"data": ...}`; a response may add `meta` (paging on entity lists; on admin
routes, e.g. `migration` notes). Warnings share one shape everywhere: `meta.warnings` is a list of
`{"code", "message"}` (`with_warnings`), present only when there is something to warn about: the
request did what it was asked, but the caller should look (items skipped, a change made
differently from what was asked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from rocketd.errors import ApiWarning
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
    records: list[dict[str, Any]], meta: dict[str, Any], encoded: list[bytes] | None = None
) -> web.Response:
    """`{"data": [...], "meta": {...}}`; `encoded` holds records already in their JSON form
    (written by PostgreSQL), which are joined as they are."""
    if encoded is None:
        return json_body({"data": records, "meta": meta})
    body = b"".join((b'{"data":[', b",".join(encoded), b'],"meta":', dumps(meta), b"}"))
    return web.Response(body=body, content_type="application/json")


def data(value: Any, status: int = 200, meta: Mapping[str, Any] | None = None) -> web.Response:
    """`{"data": value}`: every single-object and unpaged-list response; with `"meta"` when
    `meta` has anything in it."""
    if meta:
        return json_body({"data": value, "meta": dict(meta)}, status)
    return json_body({"data": value}, status)


def with_warnings(meta: Mapping[str, Any] | None, warnings: Iterable[ApiWarning]) -> dict[str, Any]:
    """`meta` plus `"warnings": [{"code", "message"}, ...]` when there are any."""
    out = dict(meta or {})
    listed = [w.to_json() for w in warnings]
    if listed:
        out["warnings"] = [*out.get("warnings", []), *listed]
    return out


def message(text: str, status: int = 200) -> web.Response:
    """`{"message": text}`: the contract's envelope-less answers (logout, app delete)."""
    return json_body({"message": text}, status)
