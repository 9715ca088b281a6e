"""Declared indexes as the database gets them: names and DDL (pure)."""

from __future__ import annotations

from rocketd.db.declared_indexes import declared_indexes
from rocketd.metadata.parse import parse_entity


def entity(table: str = "products", soft_delete: bool = False) -> object:
    return parse_entity(
        {
            "name": "product",
            "table": table,
            "soft_delete": soft_delete,
            "primary_key": {"field": "id", "type": "int"},
            "fields": [
                {"name": "id", "type": "int"},
                {"name": "category", "type": "string", "indexed": True},
                {"name": "price", "type": "float"},
            ],
            "indexes": [{"fields": ["category", "-price"], "unique": True}],
        }
    )


def test_fields_indexes_come_first_then_the_entity_indexes() -> None:
    found = declared_indexes(entity())  # type: ignore[arg-type]
    assert [i.definition() for i in found] == [
        {"fields": ["category"], "unique": False, "partial": False},
        {"fields": ["category", "-price"], "unique": True, "partial": False},
    ]
    assert found[1].create_statement().as_string(None) == (
        'CREATE UNIQUE INDEX CONCURRENTLY "rx_products_category_dprice_'
        + found[1].name.rsplit("_", 1)[1]
        + '" ON "public"."products" ("category", "price" DESC)'
    )


def test_soft_delete_makes_them_partial_and_renames_them() -> None:
    plain = declared_indexes(entity())  # type: ignore[arg-type]
    live = declared_indexes(entity(soft_delete=True))  # type: ignore[arg-type]
    assert live[0].create_statement().as_string(None).endswith('WHERE "deleted_at" IS NULL')
    assert {i.name for i in plain}.isdisjoint(i.name for i in live)


def test_names_stay_within_63_bytes_and_distinct() -> None:
    long_table = "t" + "x" * 62
    found = declared_indexes(entity(table=long_table))  # type: ignore[arg-type]
    assert all(len(i.name.encode()) <= 63 for i in found)
    assert len({i.name for i in found}) == 2
