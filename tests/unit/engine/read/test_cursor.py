"""Keyset cursors (`engine/read/cursor.py`) and the keyset condition they feed (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rocketd.engine.read.cursor import cursor_key, decode_cursor, encode_cursor
from rocketd.engine.read.paging import cursorable
from rocketd.engine.read.query import ListQuery, SortKey
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.sql.compose import keyset_condition
from rocketd.errors import InvalidPayload
from rocketd.metadata.parse import parse_entity
from rocketd.metadata.registry import EMPTY_REGISTRY

ENTITY = parse_entity(
    {
        "name": "item",
        "table": "items",
        "primary_key": {"field": "id", "type": "int"},
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "price", "type": "decimal", "precision": 2},
            {"name": "score", "type": "float"},
            {"name": "at", "type": "timestamp"},
        ],
    }
)
KEY = cursor_key("app secret")
ORDER = (("price", True), ("score", False), ("at", False), ("id", False))
RECORD = {"id": 7, "price": "10.50", "score": 0.1 + 0.2, "at": "2026-01-01T00:00:00.000001Z"}


def test_a_cursor_round_trips_its_key_values_exactly() -> None:
    values = decode_cursor(KEY, ENTITY, ORDER, encode_cursor(KEY, ENTITY, ORDER, RECORD))
    assert values[0] == Decimal("10.50") and values[1] == 0.1 + 0.2 and values[3] == 7
    assert values[2].microsecond == 1


def test_null_key_values_survive() -> None:
    token = encode_cursor(KEY, ENTITY, ORDER, {**RECORD, "score": None})
    assert decode_cursor(KEY, ENTITY, ORDER, token)[1] is None


@pytest.mark.parametrize(
    ("key", "order"),
    [
        (cursor_key("another app"), ORDER),  # signed by another app
        (KEY, (("id", False),)),  # made for another sort
    ],
)
def test_foreign_cursors_are_refused(key: bytes, order: tuple[tuple[str, bool], ...]) -> None:
    token = encode_cursor(KEY, ENTITY, ORDER, RECORD)
    with pytest.raises(InvalidPayload) as caught:
        decode_cursor(key, ENTITY, order, token)
    assert caught.value.message.startswith("Invalid cursor: ")


def test_keyset_condition_reads_nulls_the_way_postgres_orders_them() -> None:
    condition, slots = keyset_condition((("score", False), ("id", False)), (True, False), "id")
    # ascending NULLs come last: after a NULL only NULLs with a greater key follow
    assert condition.as_string(None) == '(("score" IS NULL AND "id" > %s))'
    assert slots == (1,)
    condition, _ = keyset_condition((("score", True), ("id", False)), (True, False), "id")
    assert condition.as_string(None).startswith('(("score" IS NOT NULL)')


def test_an_index_after_equality_filtered_columns_serves_the_sort() -> None:
    snapshot = AppSnapshot(
        registry=EMPTY_REGISTRY,
        sort_indexes={"items": frozenset({"id", "category"})},
        index_columns={"items": (("category", "price"), ("id",))},
    )
    assert "price" not in snapshot.sort_columns("items", ())
    assert "price" in snapshot.sort_columns("items", ["category"])
    assert "price" not in snapshot.sort_columns("items", ["name"])


def test_no_cursor_for_a_sort_the_caller_cannot_read_or_resume() -> None:
    by_price = ListQuery(sort=(SortKey("price", True), SortKey("id")), count_total=False)
    assert cursorable(ENTITY, by_price, None)
    assert not cursorable(ENTITY, by_price, frozenset({"id", "score"}))  # price is hidden
    assert cursorable(ENTITY, by_price, frozenset({"id", "price"}))
