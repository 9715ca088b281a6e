"""`indexed`, `indexes` and `list_total` in entity metadata: parsing, limits, echo."""

from __future__ import annotations

from typing import Any

import pytest

from rocketd.metadata.model import MAX_INDEXES, IndexColumn, IndexSpec
from rocketd.metadata.parse import MetadataError, parse_entity


def raw(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "product",
        "table": "products",
        "primary_key": {"field": "id", "type": "int"},
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "category", "type": "string"},
            {"name": "price", "type": "decimal"},
            {"name": "meta", "type": "json"},
        ],
    }
    data.update(over)
    return data


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(MetadataError) as caught:
        parse_entity(data)
    return {d.field or "": d.message for d in caught.value.details}


def test_indexes_parse_and_echo() -> None:
    entity = parse_entity(raw(indexes=[{"fields": ["category", "-price"]}], list_total=False))
    assert entity.indexes == (
        IndexSpec((IndexColumn("category"), IndexColumn("price", descending=True))),
    )
    assert entity.list_total is False
    echoed = entity.to_json()
    assert echoed["indexes"] == [{"fields": ["category", "-price"], "unique": False}]
    assert echoed["list_total"] is False
    assert parse_entity(echoed) == entity


def test_defaults_are_not_echoed() -> None:
    echoed = parse_entity(raw()).to_json()
    assert "indexes" not in echoed and "list_total" not in echoed


def test_too_many_indexes() -> None:
    many = [{"fields": ["category", f"{'-' if i % 2 else ''}price"]} for i in range(2)] * (
        MAX_INDEXES // 2 + 1
    )
    assert "too many indexes" in problems(raw(indexes=many))["indexes"]


def test_hostile_names_are_quoted_shortened_and_refused() -> None:
    found = problems(raw(indexes=[{"fields": ["a" * 500]}]))
    message = found["indexes[0].fields[0]"]
    assert "not a field name" in message and len(message) < 250


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ({"name": "id", "type": "int", "indexed": True}, "fields[0].indexed"),
        ({"name": "id", "type": "int", "unique": True, "indexed": "yes"}, "fields[0].indexed"),
    ],
)
def test_indexed_flag_problems(field: dict[str, Any], path: str) -> None:
    fields = [field, {"name": "category", "type": "string"}]
    assert path in problems(raw(fields=fields))


def test_list_total_must_be_boolean() -> None:
    assert "list_total" in problems(raw(list_total="no"))
