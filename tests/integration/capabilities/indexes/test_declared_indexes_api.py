"""Indexes declared in entity metadata, over the admin API: validation, the builds (concurrent,
outside the admin transaction), their state in the entity's answer, drops, export/import."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import wait_until


def product(**over: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "name": "product",
        "table": "products",
        "primary_key": {"field": "id", "type": "int", "generated": True},
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "sku", "type": "string"},
            {"name": "category", "type": "string", "indexed": True},
            {"name": "price", "type": "decimal", "precision": 2},
            {"name": "meta", "type": "json"},
        ],
        "indexes": [{"fields": ["category", "-price"], "unique": False}],
    }
    entity.update(over)
    return entity


@pytest.fixture
async def app(client: Any) -> AppClient:
    return await new_app(client)


def index_defs(pg_dsn: str, app: AppClient, table: str) -> dict[str, tuple[str, bool]]:
    """name -> (definition, valid) of the table's indexes named like declared ones."""
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        rows = conn.execute(
            "select i.relname, pg_get_indexdef(ix.indexrelid), ix.indisvalid from pg_index ix"
            " join pg_class i on i.oid = ix.indexrelid join pg_class t on t.oid = ix.indrelid"
            " where t.relname = %s and i.relname like 'rx\\_%%'",
            (table,),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


async def states(app: AppClient, entity: str) -> list[str]:
    row = (await app.ok("GET", f"_admin/entities/{entity}"))["data"]
    return [i["state"] for i in row.get("indexes", [])]


async def all_ready(app: AppClient, entity: str, count: int) -> None:
    async def ready() -> bool:
        found = await states(app, entity)
        return len(found) == count and all(s == "ready" for s in found)

    await wait_until(ready, "the declared indexes to be built", timeout=20, interval=0.05)


async def test_declared_indexes_are_built_and_shown(app: AppClient, pg_dsn: str) -> None:
    saved = (await app.ok("POST", "_admin/entities", product(), 201))["data"]
    assert saved["indexes"] == [{"fields": ["category", "-price"], "unique": False}]
    assert saved["fields"][2]["indexed"] is True
    await all_ready(app, "product", 2)
    row = (await app.ok("GET", "_admin/entities/product"))["data"]
    assert sorted((i["fields"], i["unique"], i["partial"]) for i in row["indexes"]) == [
        (["category"], False, False),
        (["category", "-price"], False, False),
    ]
    defs = index_defs(pg_dsn, app, "products")
    assert sorted(defs) == sorted(i["name"] for i in row["indexes"])
    assert all(valid for _, valid in defs.values())
    assert sorted(d.partition(" USING ")[2] for d, _ in defs.values()) == [
        "btree (category)",
        "btree (category, price DESC)",
    ]
    # An entity without declared indexes keeps the contract's answer shape.
    await app.ok("POST", "_admin/entities", product(name="plain", table="plain", indexes=[]), 201)
    plain = (await app.ok("GET", "_admin/entities/plain"))["data"]
    assert "indexes" in plain  # category is still indexed: true
    bare_fields = [{"name": "id", "type": "int"}, {"name": "x", "type": "string"}]
    await app.ok(
        "POST",
        "_admin/entities",
        product(name="bare", table="bare", fields=bare_fields, indexes=[]),
        201,
    )
    bare = (await app.ok("GET", "_admin/entities/bare"))["data"]
    assert set(bare) == {"name", "table_name", "definition", "created_at", "updated_at"}


async def test_a_ready_index_reaches_the_snapshot_lists_plan_with(
    app: AppClient, runtime: Any
) -> None:
    await app.ok("POST", "_admin/entities", product(), 201)
    await all_ready(app, "product", 2)

    def served() -> bool:
        snapshot = runtime.services.directory.actors[app.name].snapshot
        return "price" in snapshot.sort_columns("products", ["category"])

    await wait_until(served, "the snapshot to see the built index", timeout=10, interval=0.02)


async def test_soft_delete_indexes_are_partial_on_live_rows(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", product(soft_delete=True), 201)
    await all_ready(app, "product", 2)
    defs = index_defs(pg_dsn, app, "products")
    assert len(defs) == 2
    assert all(d.endswith("WHERE (deleted_at IS NULL)") for d, _ in defs.values())


async def test_removed_index_is_dropped(app: AppClient, pg_dsn: str) -> None:
    created = await app.ok("POST", "_admin/entities", product(), 201)
    notes = created["meta"]["migration"]
    assert [n.split(": ")[1].split(";")[0] for n in notes] == ["declared", "declared"]
    await all_ready(app, "product", 2)
    changed = await app.ok("PUT", "_admin/entities/product", product(indexes=[]))
    (note,) = changed["meta"]["migration"]
    assert note.startswith("index rx_products_category_dprice_") and note.endswith(
        "(category, -price): no longer declared; dropped concurrently after this change"
    )

    async def one_left() -> bool:
        return await states(app, "product") == ["ready"]

    await wait_until(one_left, "the removed index to be dropped", timeout=20, interval=0.05)
    assert len(index_defs(pg_dsn, app, "products")) == 1


async def test_failed_unique_build_is_reported_and_cleaned_up(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", product(indexes=[]), 201)
    for sku in ("a", "a", "b"):
        await app.ok("POST", "product", {"sku": sku, "category": "c", "price": "1"}, 201)
    unique = [{"fields": ["sku"], "unique": True}]
    await app.ok("PUT", "_admin/entities/product", product(indexes=unique))

    async def failed() -> bool:
        return any(s.startswith("failed: ") for s in await states(app, "product"))

    await wait_until(failed, "the unique build to fail", timeout=20, interval=0.05)
    found = await states(app, "product")
    assert any("could not create unique index" in s for s in found), found
    # The invalid index the failed build left is gone; the other one stands.
    assert [d for d, _ in index_defs(pg_dsn, app, "products").values()] == [
        d for d, _ in index_defs(pg_dsn, app, "products").values() if "sku" not in d
    ]
    # Fixing the data and saving again retries the build.
    records = (await app.ok("GET", "product?filter[sku]=a"))["data"]
    await app.ok("PUT", f"product/{records[0]['id']}", {"sku": "z"})
    await app.ok("PUT", "_admin/entities/product", product(indexes=unique))
    await all_ready(app, "product", 2)


@pytest.mark.parametrize(
    ("indexes", "field_path"),
    [
        ([{"fields": ["category"], "uniqe": True}], "indexes[0].uniqe"),
        ([{"fields": ["nope"]}], "indexes[0].fields[0]"),
        ([{"fields": ["category", "category"]}], "indexes[0].fields[1]"),
        ([{"fields": ["sku"]}, {"fields": ["sku"]}], "indexes[1].fields"),
        ([{"fields": [f"f{i}" for i in range(9)]}], "indexes[0].fields"),
        ([{"fields": ['x"); drop table products; --']}], "indexes[0].fields[0]"),
        ([{"fields": ["meta"]}], "indexes[0].fields[0]"),
        ([{"fields": []}], "indexes[0].fields"),
        ({"fields": ["sku"]}, "indexes"),
        ([{"fields": ["sku"], "unique": "yes"}], "indexes[0].unique"),
        ([{"fields": ["category"]}], "fields[2].indexed"),
    ],
)
async def test_bad_index_specs_are_422(
    app: AppClient, indexes: Any, field_path: str, pg_dsn: str
) -> None:
    status, body = await app.call("POST", "_admin/entities", product(indexes=indexes))
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_FAILED"
    assert field_path in [d.get("field") for d in body["error"]["details"]]
    status, _ = await app.call("GET", "_admin/entities/product")
    assert status == 404  # nothing written


async def test_export_and_import_carry_declared_indexes(client: Any, app: AppClient) -> None:
    await app.ok("POST", "_admin/entities", product(list_total=False), 201)
    exported = (await app.ok("GET", "_admin/export"))["data"]
    definition = next(e for e in exported["entities"] if e["name"] == "product")
    assert definition["indexes"] == [{"fields": ["category", "-price"], "unique": False}]
    assert definition["list_total"] is False
    other = await new_app(client)
    await other.ok("POST", "_admin/import", exported)
    await all_ready(other, "product", 2)
