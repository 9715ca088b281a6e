"""How a list page is paged and what its `meta` says: counted offset pages (the contract's
`page`, `per_page`, `total`), uncounted pages (`?total=false` or the entity's
`list_total: false`: `has_more` from one extra row instead of a `COUNT(*)`), and keyset pages
(`?after=<cursor>`, `meta.next_cursor`; `read.cursor`; counted only with `total=true`).

Cursors are offered only when every sort key is a field the caller may read and can be resumed
from (not json/file): a cursor spells the values of its keys.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import orjson

from rocketd.engine.read.cursor import cursor_sortable, decode_cursor, encode_cursor
from rocketd.engine.read.query import ListQuery
from rocketd.errors import ErrorDetail, InvalidPayload
from rocketd.metadata.model import Entity


def cursorable(entity: Entity, spec: ListQuery, visible: Collection[str] | None) -> bool:
    order = spec.order
    if visible is not None and any(name not in visible for name, _ in order):
        return False
    return cursor_sortable(entity, order)


def keyset_of(
    entity: Entity, spec: ListQuery, visible: Collection[str] | None, key: bytes
) -> tuple[Any, ...] | None:
    """The decoded `after` cursor (None without one); 400 for a bad one."""
    if spec.after is None:
        return None
    if not cursorable(entity, spec, visible):
        message = (
            "Invalid cursor: this sort cannot be paged by cursor"
            " (it has a json/file field or a field you cannot read)"
        )
        raise InvalidPayload(message, [ErrorDetail(message, field="after", rule="cursor")])
    return decode_cursor(key, entity, spec.order, spec.after)


def page_meta(
    entity: Entity,
    spec: ListQuery,
    items: list[Any],
    total: int | None,
    *,
    keyset: Sequence[Any] | None,
    can_cursor: bool,
    key: bytes,
) -> dict[str, Any]:
    """The page's meta; trims the extra row of an uncounted or keyset page from `items`
    (records, or their wire JSON bytes), in place."""
    if keyset is None and spec.count_total:
        return {"page": spec.page, "per_page": spec.per_page, "total": total}
    has_more = len(items) > spec.per_page
    del items[spec.per_page :]
    meta: dict[str, Any] = {} if keyset is not None else {"page": spec.page}
    meta["per_page"] = spec.per_page
    if total is not None:
        meta["total"] = total
    meta["has_more"] = has_more
    if has_more and can_cursor:
        last = items[-1]
        record = orjson.loads(last) if isinstance(last, bytes) else last
        meta["next_cursor"] = encode_cursor(key, entity, spec.order, record)
    return meta
