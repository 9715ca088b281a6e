"""Index guidance over HTTP: a list shape no index serves is reported with the index that
would, and is no longer reported once that index is declared and built."""

from __future__ import annotations

from typing import Any

from tests.support.apps import new_app
from tests.support.helpers import wait_until

ENTITY: dict[str, Any] = {
    "name": "product",
    "table": "products",
    "primary_key": {"field": "id", "type": "int", "generated": True},
    "soft_delete": True,
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "category", "type": "string"},
        {"name": "price", "type": "float"},
    ],
}


async def test_guidance_reports_unindexed_lists_until_indexed(client: Any) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", ENTITY, 201)
    for i in range(5):
        await app.ok("POST", "product", {"category": "ab"[i % 2], "price": i}, 201)
    await app.ok("GET", "product")  # by primary key: always served
    await app.ok("GET", "product?filter[category]=a&sort=-price")
    await app.ok("GET", "product?filter[category]=b&sort=-price")
    await app.ok("GET", "product?filter[price.gt]=1")

    found = (await app.ok("GET", "_admin/indexes/guidance"))["data"]
    by_sort = {(f["sort"], tuple(x["field"] for x in f["filters"])): f for f in found}
    assert set(by_sort) == {("-price,id", ("category",)), ("id", ("price",))}
    category = by_sort[("-price,id", ("category",))]
    assert category["entity"] == "product" and category["seen"] == 2
    assert category["filters"] == [{"field": "category", "op": "eq"}]
    assert category["suggested_index"] == {"fields": ["category", "-price"], "unique": False}
    assert by_sort[("id", ("price",))]["suggested_index"]["fields"] == ["price"]

    entity = {**ENTITY, "indexes": [category["suggested_index"]]}
    await app.ok("PUT", "_admin/entities/product", entity)

    async def served() -> bool:
        found = (await app.ok("GET", "_admin/indexes/guidance"))["data"]
        return [f["sort"] for f in found] == ["id"]

    await wait_until(served, "the declared index to serve the list", timeout=20, interval=0.1)


async def test_guidance_is_for_app_admins(client: Any) -> None:
    app = await new_app(client)
    resp = await client.get(f"/api/{app.name}/_admin/indexes/guidance")
    assert resp.status == 401
