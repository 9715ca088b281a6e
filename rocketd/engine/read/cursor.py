"""Keyset cursors: `meta.next_cursor` and `?after=<cursor>` of the list route.

A cursor holds the sort key values of a page's last record (the primary key last, so it names
one position), the entity and the sort it was made for. It is opaque to clients but not secret:
URL-safe base64 of a small JSON payload, then a dot, then an HMAC-SHA256 tag (truncated to 128
bits) under a key derived from the app's secret, compared in constant time. A cursor that is
malformed, forged, or made for another entity or sort is a 400.

Because the next page is "the rows after these key values" rather than "skip N rows", a row
inserted before the cursor's position does not shift the pages after it, and a deep page costs
what the first one does when an index serves the sort. Values travel in the one text form
(`field_types.value_text`: exact decimals, microsecond UTC times, shortest round-trip floats) and
are read back as filter values are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

import orjson

from rocketd.errors import ErrorDetail, InvalidPayload
from rocketd.metadata.field_types import JSON_TYPES, ValueProblem, coerce_filter_value
from rocketd.metadata.model import Entity

MAX_CURSOR_LENGTH: Final = 4096
_TAG_BYTES: Final = 16
_PURPOSE: Final = b"rocketd list cursor v1"


@lru_cache(maxsize=64)
def cursor_key(secret: str) -> bytes:
    """The key cursors of an app are signed with, derived from its secret (never the secret
    itself, so a cursor tag cannot help forge anything else)."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _sort_text(order: Sequence[tuple[str, bool]]) -> str:
    return ",".join(("-" if descending else "") + name for name, descending in order)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def cursor_sortable(entity: Entity, order: Sequence[tuple[str, bool]]) -> bool:
    """Whether pages in this order can be cursored (json/file values have no order we could
    resume from)."""
    return all(entity.field_map[name].base_type not in JSON_TYPES for name, _ in order)


def _text(value: Any) -> str | None:
    """A record's wire value as the text `coerce_filter_value` reads back."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def encode_cursor(
    key: bytes, entity: Entity, order: Sequence[tuple[str, bool]], record: Mapping[str, Any]
) -> str:
    """The cursor of the position right after `record` (its wire form) in `order`."""
    payload = orjson.dumps(
        {"e": entity.name, "s": _sort_text(order), "v": [_text(record[n]) for n, _ in order]}
    )
    return f"{_b64(payload)}.{_b64(_tag(key, payload))}"


def _bad(reason: str) -> InvalidPayload:
    message = f"Invalid cursor: {reason}"
    return InvalidPayload(message, [ErrorDetail(message, field="after", rule="cursor")])


def decode_cursor(
    key: bytes, entity: Entity, order: Sequence[tuple[str, bool]], token: str
) -> tuple[Any, ...]:
    """The key values (database parameters, None for NULL) a cursor resumes after; 400
    `INVALID_PAYLOAD` when it is malformed, forged, or from another entity or sort."""
    if not token or len(token) > MAX_CURSOR_LENGTH or not token.isascii():
        raise _bad("not a cursor of this API (use meta.next_cursor of a list page)")
    encoded, dot, tag_text = token.partition(".")
    try:
        payload, tag = _unb64(encoded), _unb64(tag_text)
    except (binascii.Error, ValueError):
        raise _bad("not a cursor of this API (use meta.next_cursor of a list page)") from None
    if not dot or not hmac.compare_digest(tag, _tag(key, payload)):
        raise _bad("its signature does not match (cursors cannot be edited)")
    try:
        data = orjson.loads(payload)
        entity_name, sort, raw_values = data["e"], data["s"], data["v"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise _bad("not a cursor of this API") from None
    if entity_name != entity.name:
        raise _bad(f"it was made for entity {entity_name}, not {entity.name}")
    if sort != _sort_text(order):
        raise _bad(f"it was made for sort={sort}; ask again with that sort, or without after")
    if not isinstance(raw_values, list) or len(raw_values) != len(order):
        raise _bad("not a cursor of this API")
    values: list[Any] = []
    for (name, _), raw in zip(order, raw_values, strict=True):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(coerce_filter_value(entity.field_map[name], str(raw)))
        except ValueProblem:
            raise _bad(f"its value for {name} no longer fits the field") from None
    if values[-1] is None:
        raise _bad("not a cursor of this API")
    return tuple(values)
