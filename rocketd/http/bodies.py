"""Reading JSON request bodies strictly: malformed JSON, non-objects, unknown keys and wrong
types are refused with 400 `INVALID_PAYLOAD` before a handler sees the data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from rocketd.errors import ErrorDetail, InvalidPayload

# Messages of the contract: data/admin routes vs auth/platform routes.
INVALID_JSON_BODY = "Invalid JSON body"
INVALID_REQUEST_BODY = "Invalid request body"


async def read_json_object(
    request: web.Request, message: str = INVALID_JSON_BODY
) -> dict[str, Any]:
    raw = await request.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(message, [ErrorDetail(f"body is not valid JSON: {exc.msg}")]) from exc
    if not isinstance(value, dict):
        raise InvalidPayload(message, [ErrorDetail("body must be a JSON object")])
    return value


def reject_unknown_keys(body: dict[str, Any], allowed: Iterable[str], message: str) -> None:
    allowed_set = set(allowed)
    unknown = sorted(k for k in body if k not in allowed_set)
    if unknown:
        raise InvalidPayload(
            message,
            [
                ErrorDetail(
                    f"unknown field '{k}'; allowed: {', '.join(sorted(allowed_set))}",
                    field=k,
                    rule="unknown",
                )
                for k in unknown
            ],
        )


def optional_strings(body: dict[str, Any], keys: Iterable[str], message: str) -> None:
    """Every key in `keys` that is present and not null must be a string."""
    wrong = [k for k in keys if body.get(k) is not None and not isinstance(body[k], str)]
    if wrong:
        raise InvalidPayload(
            message,
            [ErrorDetail(f"{k} must be a string", field=k, rule="type") for k in wrong],
        )


async def read_strict_object(
    request: web.Request, allowed: Iterable[str], message: str, strings: Iterable[str] = ()
) -> dict[str, Any]:
    """A JSON object with only `allowed` keys, where the `strings` keys are strings if present."""
    allowed = tuple(allowed)
    body = await read_json_object(request, message)
    reject_unknown_keys(body, allowed, message)
    optional_strings(body, strings, message)
    return body
