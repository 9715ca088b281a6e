"""The examples of docs/entities.md, docs/querying.md and docs/nested-writes.md, run for real.

Each test replays one page's requests, in the page's order, on a fresh app loaded with
examples/invoicing.json, and asserts the responses the page shows (ids and timestamps aside).
When a page changes, change the matching test, and the other way round.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.apps import AppClient, example_schema, new_app

ZERO_UUID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def shop(client: Any) -> AppClient:
    return await new_app(client)


async def load_invoicing(shop: AppClient) -> None:
    await shop.load_schema(example_schema("invoicing"))


async def created(shop: AppClient, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict((await shop.ok("POST", entity, body, 201))["data"])


async def listed(shop: AppClient, entity: str, **params: str) -> dict[str, Any]:
    status, body = await shop.call("GET", entity, params=params)
    assert status == 200, body
    return dict(body)


async def numbers(shop: AppClient, entity: str, **params: str) -> Any:
    """What the pages' `q` helper prints: the numbers (or slugs) of the page, or the error."""
    _, body = await shop.call("GET", entity, params=params)
    if "error" in body:
        return body["error"]
    return [r.get("number") or r.get("slug") for r in body["data"]]


async def included(shop: AppClient, entity: str, id_: str, include: str) -> dict[str, Any]:
    status, body = await shop.call("GET", f"{entity}/{id_}", params={"include": include})
    assert status == 200, body
    return dict(body["data"])


def details(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["error"]["details"])


# ------------------------------------------------------------------------------ entities.md


async def test_entities_page_schema_validation_and_admin_routes(shop: AppClient) -> None:
    schema = example_schema("invoicing")
    # "Loading the example schema": the stored definitions echo the file (normalised).
    for entity in schema["entities"]:
        echoed = (await shop.ok("POST", "_admin/entities", entity, 201))["data"]
        assert echoed == {"soft_delete": False, **entity}
    for relation in schema["relations"]:
        echoed = (await shop.ok("POST", "_admin/relations", relation, 201))["data"]
        assert echoed == relation

    # "Validation": every problem of the definition at once, with key paths.
    status, body = await shop.call(
        "POST",
        "_admin/entities",
        {
            "name": "note",
            "table": "notes",
            "primary_key": {"field": "id", "generated": True},
            "fields": [
                {"name": "id", "type": "uuid"},
                {"name": "Title", "type": "strin", "requird": True},
                {"name": "pages", "type": "int", "default": "many"},
            ],
        },
    )
    assert status == 422
    assert body["error"]["code"] == "VALIDATION_FAILED"
    assert [d["field"] for d in details(body)] == [
        "fields[1].requird",
        "fields[1].name",
        "fields[1].type",
        "fields[2].default",
    ]
    assert 'did you mean "required"?' in details(body)[0]["message"]
    assert details(body)[3]["message"] == 'field "pages": default must be a whole number'

    # Checks against the app's other metadata: reserved names, system tables.
    status, body = await shop.call(
        "POST",
        "_admin/entities",
        {
            "name": "auth",
            "table": "pg_notes",
            "primary_key": {"field": "id", "generated": True},
            "fields": [{"name": "id", "type": "uuid"}],
        },
    )
    assert status == 422
    assert details(body) == [
        {
            "message": 'entity name "auth" is reserved: /api/{app}/auth is a route of its own;'
            " choose another name"
        },
        {
            "message": 'table "pg_notes" is reserved for system tables (names starting with "_"'
            ' or "pg_")'
        },
    ]

    # Entity and relation rows.
    row = (await shop.ok("GET", "_admin/entities/tag"))["data"]
    assert row["name"] == "tag" and row["table_name"] == "tags"
    assert row["definition"] == {"soft_delete": False, **schema["entities"][3]}
    assert row["created_at"].endswith("Z")
    relations = (await shop.ok("GET", "_admin/relations"))["data"]
    assert [
        {
            "name": r["name"],
            "source": r["source"],
            "target": r["target"],
            "on_delete": r["definition"]["on_delete"],
        }
        for r in relations
    ] == [
        {
            "name": "customer_invoices",
            "source": "customer",
            "target": "invoice",
            "on_delete": "restrict",
        },
        {"name": "invoice_items", "source": "invoice", "target": "item", "on_delete": "cascade"},
        {"name": "invoice_tags", "source": "invoice", "target": "tag", "on_delete": "detach"},
    ]

    # The three errors of "Admin routes".
    status, body = await shop.call("POST", "_admin/entities", schema["entities"][3])
    assert (status, body) == (
        409,
        {"error": {"code": "CONFLICT", "message": "Entity already exists: tag"}},
    )
    status, body = await shop.call("GET", "_admin/entities/nope")
    assert (status, body) == (
        404,
        {"error": {"code": "NOT_FOUND", "message": "Entity not found: nope"}},
    )
    status, body = await shop.call(
        "POST",
        "_admin/relations",
        {"name": "customer_tags", "type": "many_to_many", "source": "customer", "target": "tag"},
    )
    assert status == 422
    assert [d["field"] for d in details(body)] == [
        "join_table",
        "source_join_key",
        "target_join_key",
    ]


def _product(
    *,
    table: str = "products",
    name_type: str = "string",
    precision: int = 0,
    sku: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The walk-through's PUT bodies (entities.md "A walk-through")."""
    price: dict[str, Any] = {"name": "price", "type": "decimal"}
    if precision:
        price["precision"] = precision
    return {
        "table": table,
        "primary_key": {"field": "id", "type": "bigint", "generated": True},
        "fields": [
            {"name": "id", "type": "bigint"},
            {"name": "name", "type": name_type, "required": True},
            price,
            {"name": "stock", "type": "bigint", "default": 0},
            {"name": "active", "type": "boolean", "default": True},
            sku or {"name": "sku", "type": "string", "unique": True},
        ],
    }


async def test_entities_page_migration_walkthrough(shop: AppClient) -> None:
    created_def = (
        await shop.ok(
            "POST",
            "_admin/entities",
            {
                "name": "product",
                "table": "products",
                "primary_key": {"field": "id", "type": "int", "generated": True},
                "fields": [
                    {"name": "id", "type": "int"},
                    {"name": "name", "type": "string", "required": True},
                    {"name": "price", "type": "decimal", "precision": 2},
                    {"name": "stock", "type": "int", "default": "0"},
                    {"name": "active", "type": "boolean", "default": "true"},
                ],
            },
            201,
        )
    )["data"]
    assert created_def["fields"] == [
        {"name": "id", "type": "int"},
        {"name": "name", "type": "string", "required": True},
        {"name": "price", "type": "decimal", "precision": 2},
        {"name": "stock", "type": "int", "default": 0},
        {"name": "active", "type": "boolean", "default": True},
    ]
    widget = await created(shop, "product", {"name": "Widget", "price": "9.99"})
    assert widget == {"id": 1, "name": "Widget", "price": "9.99", "stock": 0, "active": True}

    # Widen, add an optional unique sku.
    fields = (await shop.ok("PUT", "_admin/entities/product", _product()))["data"]["fields"]
    assert fields[-1] == {"name": "sku", "type": "string", "unique": True}

    # Narrowing is refused, naming every field.
    status, body = await shop.call(
        "PUT", "_admin/entities/product", _product(name_type="int", precision=2)
    )
    assert status == 422
    assert [(d["field"], d["rule"]) for d in details(body)] == [("name", "type"), ("price", "type")]

    # NOT NULL only when the rows allow it.
    sku_required = _product(sku={"name": "sku", "type": "string", "required": True, "unique": True})
    status, body = await shop.call("PUT", "_admin/entities/product", sku_required)
    assert status == 422
    assert details(body) == [
        {
            "message": "field sku: cannot make it required: existing rows of table products have"
            " no value in column sku; fill them first (or make the field nullable)",
            "field": "sku",
            "rule": "required",
        }
    ]
    filled = (await shop.ok("PUT", "product/1", {"sku": "W-1"}))["data"]
    assert filled == {**widget, "price": "9.99", "sku": "W-1"}
    fields = (await shop.ok("PUT", "_admin/entities/product", sku_required))["data"]["fields"]
    assert fields[-1] == {"name": "sku", "type": "string", "required": True, "unique": True}

    # Changing `table` renames the table, data kept.
    renamed = {**sku_required, "table": "catalog_products"}
    assert (await shop.ok("PUT", "_admin/entities/product", renamed))["data"]["table"] == (
        "catalog_products"
    )
    assert await listed(shop, "product") == {
        "data": [filled],
        "meta": {"page": 1, "per_page": 25, "total": 1},
    }

    # Deleting the entity forgets it.
    assert await shop.ok("DELETE", "_admin/entities/product") == {
        "data": {"name": "product", "deleted": True}
    }
    status, body = await shop.call("GET", "product")
    assert (status, body["error"]["code"]) == (404, "UNKNOWN_ENTITY")


# ------------------------------------------------------------------------------ querying.md


async def seed_querying(shop: AppClient) -> dict[str, str]:
    """The "Setup" block of querying.md."""
    urgent = (await created(shop, "tag", {"label": "urgent"}))["id"]
    acme = (
        await created(
            shop, "customer", {"name": "Acme Café", "email": "billing@acme.test", "vip": True}
        )
    )["id"]
    globex = (await created(shop, "customer", {"name": "Globex"}))["id"]
    assert (await created(shop, "customer", {"name": "Initech"}))["slug"] == "initech"
    await created(
        shop,
        "invoice",
        {
            "number": "INV-2001",
            "customer_id": acme,
            "status": "sent",
            "total": "150.00",
            "issued_on": "2026-02-01",
            "items": {
                "data": [
                    {"description": "Consulting", "qty": 2, "unit_price": "50.00"},
                    {"description": "Travel", "unit_price": "50.00"},
                ]
            },
            "tags": {"data": [{"id": urgent}]},
        },
    )
    await created(
        shop,
        "invoice",
        {
            "number": "INV-2002",
            "customer_id": acme,
            "status": "paid",
            "total": "80.00",
            "issued_on": "2026-02-15",
            "notes": {"po": "PO-7", "terms": [30, "days"]},
            "items": {"data": [{"description": "Support", "qty": 4, "unit_price": "20.00"}]},
        },
    )
    await created(
        shop, "invoice", {"number": "INV-2003", "customer_id": globex, "issued_on": "2026-03-01"}
    )
    await created(shop, "invoice", {"number": "INV-2004", "status": "void"})
    return {"urgent": urgent, "acme": acme, "globex": globex}


async def test_querying_page(shop: AppClient) -> None:
    await load_invoicing(shop)
    ids = await seed_querying(shop)

    # "Listing": filter + sort + include.
    page = await listed(
        shop,
        "invoice",
        **{
            "filter[customer_id]": ids["acme"],
            "filter[status.in]": "sent,paid",
            "sort": "-issued_on",
            "include": "items,tags",
        },
    )
    assert page["meta"] == {"page": 1, "per_page": 25, "total": 2}
    paid, sent = page["data"]
    assert list(paid) == [
        "id",
        "number",
        "status",
        "customer_id",
        "total",
        "issued_on",
        "notes",
        "created_at",
        "updated_at",
        "deleted_at",
        "items",
        "tags",
    ]
    assert (paid["number"], paid["status"], paid["total"], paid["issued_on"]) == (
        "INV-2002",
        "paid",
        "80.00",
        "2026-02-15",
    )
    assert paid["notes"] == {"po": "PO-7", "terms": [30, "days"]}
    assert paid["deleted_at"] is None and paid["created_at"].endswith("Z")
    assert paid["items"] == [
        {
            "id": 3,
            "invoice_id": paid["id"],
            "description": "Support",
            "qty": 4,
            "unit_price": "20.00",
        }
    ]
    assert paid["tags"] == []
    assert (sent["number"], sent["notes"]) == ("INV-2001", None)
    assert sent["items"] == [
        {
            "id": 1,
            "invoice_id": sent["id"],
            "description": "Consulting",
            "qty": 2,
            "unit_price": "50.00",
        },
        {
            "id": 2,
            "invoice_id": sent["id"],
            "description": "Travel",
            "qty": 1,
            "unit_price": "50.00",
        },
    ]
    assert sent["tags"] == [{"id": ids["urgent"], "label": "urgent"}]

    # "Filters".
    q = numbers
    assert await q(shop, "invoice", **{"filter[total.gte]": "100"}) == ["INV-2001"]
    assert await q(shop, "invoice", **{"filter[number.ilike]": "inv-200%", "sort": "-number"}) == [
        "INV-2004",
        "INV-2003",
        "INV-2002",
        "INV-2001",
    ]
    assert await q(
        shop,
        "invoice",
        **{"filter[issued_on.gte]": "2026-02-10", "filter[issued_on.lt]": "2026-03-01"},
    ) == ["INV-2002"]
    assert await q(
        shop, "invoice", **{"filter[status.not_in]": "draft,void", "sort": "number"}
    ) == ["INV-2001", "INV-2002"]
    assert await q(shop, "invoice", **{"filter[status.in]": ""}) == []
    assert await q(shop, "invoice", **{"filter[customer_id.neq]": ids["acme"]}) == ["INV-2003"]
    assert await q(
        shop,
        "invoice",
        **{"filter[created_at.gte]": "2026-01-01T00:00:00+01:00", "sort": "number"},
    ) == ["INV-2001", "INV-2002", "INV-2003", "INV-2004"]
    assert await q(shop, "customer", **{"filter[vip]": "t"}) == ["acme-cafe"]

    # Filter errors.
    assert await q(shop, "invoice", **{"filter[colour]": "red"}) == {
        "code": "UNKNOWN_FIELD",
        "message": "Unknown filter field: colour",
    }
    assert await q(shop, "invoice", **{"filter[number.ends_with]": "-2002"}) == ["INV-2002"]
    err = await q(shop, "invoice", **{"filter[status.startswith]": "d"})
    assert err["code"] == "INVALID_PAYLOAD"
    assert err["message"].startswith("Unknown filter operator: startswith")
    err = await q(shop, "invoice", **{"filter[total.gte]": "lots"})
    assert err["message"] == "Invalid filter value for total: 'lots' must be a decimal number"
    assert err["details"] == [{"message": err["message"], "field": "total", "rule": "type"}]
    err = await q(shop, "invoice", **{"filter[notes]": "x"})
    assert err["code"] == "INVALID_PAYLOAD" and err["details"][0]["field"] == "notes"
    err = await q(shop, "invoice", **{"filter[issued_on.like]": "2026%"})
    assert err["message"] == (
        "Invalid filter value for issued_on: like applies only to string and text fields"
    )

    # "Sorting".
    assert await q(shop, "invoice", sort="status,-total") == [
        "INV-2003",
        "INV-2002",
        "INV-2001",
        "INV-2004",
    ]
    assert await q(shop, "invoice", sort="-issued_on") == [
        "INV-2004",
        "INV-2003",
        "INV-2002",
        "INV-2001",
    ]
    assert await q(shop, "invoice", sort="bogus") == {
        "code": "UNKNOWN_FIELD",
        "message": "Unknown sort field: bogus",
    }

    # "Paging".
    page = await listed(shop, "invoice", sort="number", per_page="3", page="2")
    assert [r["number"] for r in page["data"]] == ["INV-2004"]
    assert page["meta"] == {"page": 2, "per_page": 3, "total": 4}
    assert (await listed(shop, "invoice", per_page="500", page="zero"))["meta"] == {
        "page": 1,
        "per_page": 100,
        "total": 4,
    }
    assert await listed(shop, "invoice", page="99999999") == {
        "data": [],
        "meta": {"page": 40001, "per_page": 25, "total": 4},
    }

    # "Includes": forward 1:N ([] when none), reverse (null when the FK is null), m:n reverse.
    page = await listed(shop, "customer", include="invoices", sort="name")
    assert [(r["slug"], sorted(i["number"] for i in r["invoices"])) for r in page["data"]] == [
        ("acme-cafe", ["INV-2001", "INV-2002"]),
        ("globex", ["INV-2003"]),
        ("initech", []),
    ]
    page = await listed(shop, "invoice", include="customer", sort="number")
    assert [(r["number"], r["customer"] and r["customer"]["name"]) for r in page["data"]] == [
        ("INV-2001", "Acme Café"),
        ("INV-2002", "Acme Café"),
        ("INV-2003", "Globex"),
        ("INV-2004", None),
    ]
    assert "deleted_at" not in page["data"][0]["customer"]  # declared fields only
    page = await listed(shop, "tag", include="invoice")
    assert [(r["label"], [i["number"] for i in r["invoice"]]) for r in page["data"]] == [
        ("urgent", ["INV-2001"])
    ]

    # "Getting one record": by slug with include, by key, and an id that is neither.
    acme = await included(shop, "customer", "acme-cafe", "invoices")
    assert acme["id"] == ids["acme"] and acme["deleted_at"] is None and acme["vip"] is True
    assert sorted(i["number"] for i in acme["invoices"]) == ["INV-2001", "INV-2002"]
    assert (await shop.ok("GET", f"customer/{ids['globex']}"))["data"]["name"] == "Globex"
    status, body = await shop.call("GET", "invoice/INV-2001")
    assert (status, body) == (
        404,
        {"error": {"code": "NOT_FOUND", "message": "invoice with id INV-2001 not found"}},
    )


# -------------------------------------------------------------------------- nested-writes.md


async def item_rows(shop: AppClient, invoice: str) -> list[tuple[int, str, int]]:
    data = await included(shop, "invoice", invoice, "items")
    return [(i["id"], i["description"], i["qty"]) for i in data["items"]]


async def tag_labels(shop: AppClient, invoice: str) -> list[str]:
    return sorted(t["label"] for t in (await included(shop, "invoice", invoice, "tags"))["tags"])


async def test_nested_writes_page(shop: AppClient) -> None:
    await load_invoicing(shop)
    urgent = (await created(shop, "tag", {"label": "urgent"}))["id"]
    export = (await created(shop, "tag", {"label": "export"}))["id"]
    acme = (await created(shop, "customer", {"name": "Acme Café", "email": "billing@acme.test"}))[
        "id"
    ]

    # "Creating a record with its children".
    invoice = await created(
        shop,
        "invoice",
        {
            "number": "INV-1001",
            "customer_id": acme,
            "total": "150.00",
            "issued_on": "2026-02-22",
            "items": {
                "data": [
                    {"description": "Consulting", "qty": 2, "unit_price": "50.00"},
                    {"description": "Travel", "unit_price": "50.00"},
                ]
            },
            "tags": {"data": [{"id": urgent}]},
        },
    )
    assert {k: v for k, v in invoice.items() if k not in ("id", "created_at", "updated_at")} == {
        "number": "INV-1001",
        "status": "draft",
        "customer_id": acme,
        "total": "150.00",
        "issued_on": "2026-02-22",
        "notes": None,
        "deleted_at": None,
    }
    inv = invoice["id"]
    children = await included(shop, "invoice", inv, "items,tags")
    assert [
        {k: i[k] for k in ("id", "description", "qty", "unit_price")} for i in children["items"]
    ] == [
        {"id": 1, "description": "Consulting", "qty": 2, "unit_price": "50.00"},
        {"id": 2, "description": "Travel", "qty": 1, "unit_price": "50.00"},
    ]
    assert [t["label"] for t in children["tags"]] == ["urgent"]

    # diff.
    body: dict[str, Any] = {
        "items": {
            "data": [
                {"id": 1, "qty": 3},
                {"description": "Support", "unit_price": "20.00"},
                {"id": 2, "_delete": True},
            ]
        }
    }
    assert (await shop.ok("PUT", f"invoice/{inv}", body))["data"]["number"] == "INV-1001"
    assert await item_rows(shop, inv) == [(1, "Consulting", 3), (3, "Support", 1)]

    # replace.
    body = {
        "status": "sent",
        "items": {
            "_write_mode": "replace",
            "data": [{"id": 1, "qty": 5}, {"description": "Hosting", "unit_price": "30.00"}],
        },
    }
    record = (await shop.ok("PUT", f"invoice/{inv}", body))["data"]
    assert (record["number"], record["status"]) == ("INV-1001", "sent")
    assert await item_rows(shop, inv) == [(1, "Consulting", 5), (4, "Hosting", 1)]

    # append.
    body = {
        "items": {
            "_write_mode": "append",
            "data": [{"id": 1, "qty": 99}, {"description": "Licence", "unit_price": "100.00"}],
        }
    }
    await shop.ok("PUT", f"invoice/{inv}", body)
    assert await item_rows(shop, inv) == [
        (1, "Consulting", 5),
        (4, "Hosting", 1),
        (5, "Licence", 1),
    ]

    # Updates and deletes stay inside the parent.
    await created(
        shop,
        "invoice",
        {"number": "INV-1002", "items": {"data": [{"description": "Other", "unit_price": "1.00"}]}},
    )
    body = {"items": {"data": [{"id": 6, "qty": 2}, {"id": 999, "_delete": True}]}}
    status, answer = await shop.call("PUT", f"invoice/{inv}", body)
    assert status == 422
    assert details(answer) == [
        {
            "message": "items[0] is not a child of this record",
            "field": "items[0]",
            "rule": "not_child",
        },
        {
            "message": "items[1] is not a child of this record",
            "field": "items[1]",
            "rule": "not_child",
        },
    ]

    # Many-to-many.
    body = {"tags": {"data": [{"id": export}, {"id": urgent, "_delete": True}]}}
    await shop.ok("PUT", f"invoice/{inv}", body)
    assert await tag_labels(shop, inv) == ["export"]
    body = {"tags": {"_write_mode": "replace", "data": [{"id": urgent}, {"id": urgent}]}}
    await shop.ok("PUT", f"invoice/{inv}", body)
    assert await tag_labels(shop, inv) == ["urgent"]
    await shop.ok(
        "PUT", f"invoice/{inv}", {"tags": {"_write_mode": "append", "data": [{"id": export}]}}
    )
    assert await tag_labels(shop, inv) == ["export", "urgent"]
    status, answer = await shop.call(
        "PUT", f"invoice/{inv}", {"tags": {"data": [{"label": "new"}, {"id": ZERO_UUID}]}}
    )
    assert status == 422
    assert details(answer) == [
        {
            "message": "tags[0] needs the id of an existing tag (many-to-many writes only link"
            " records)",
            "field": "tags[0].id",
            "rule": "required",
        }
    ]
    status, answer = await shop.call(
        "PUT", f"invoice/{inv}", {"tags": {"data": [{"id": ZERO_UUID}]}}
    )
    assert status == 422
    assert details(answer) == [
        {"message": f"tags[0]: no tag with id {ZERO_UUID}", "field": "tags[0]", "rule": "exists"}
    ]

    # Several levels.
    globex = await created(
        shop,
        "customer",
        {
            "name": "Globex",
            "invoices": {
                "data": [
                    {
                        "number": "INV-2001",
                        "status": "paid",
                        "items": {
                            "data": [{"description": "Widget", "qty": 10, "unit_price": "9.99"}]
                        },
                        "tags": {"data": [{"id": export}]},
                    },
                    {"number": "INV-2002"},
                ]
            },
        },
    )
    assert (globex["name"], globex["slug"]) == ("Globex", "globex")
    nested = await included(shop, "customer", "globex", "invoices")
    assert sorted(i["number"] for i in nested["invoices"]) == ["INV-2001", "INV-2002"]
    page = await listed(shop, "invoice", **{"filter[number]": "INV-2001", "include": "items,tags"})
    assert [
        ([i["description"] for i in r["items"]], [t["label"] for t in r["tags"]])
        for r in page["data"]
    ] == [(["Widget"], ["export"])]

    # "Validation": paths, all problems together.
    status, answer = await shop.call(
        "POST",
        "customer",
        {
            "name": "Initech",
            "invoices": {
                "data": [
                    {"number": "INV-3001", "status": "paid", "total": "a lot"},
                    {"status": "lost", "items": {"data": [{"qty": 1.5}]}},
                ]
            },
        },
    )
    assert status == 422 and answer["error"]["message"] == "Validation failed"
    assert [(d["field"], d["rule"]) for d in details(answer)] == [
        ("invoices[0].total", "type"),
        ("invoices[1].items[0].description", "required"),
        ("invoices[1].items[0].qty", "type"),
        ("invoices[1].items[0].unit_price", "required"),
        ("invoices[1].number", "required"),
        ("invoices[1].status", "enum"),
    ]
    assert details(answer)[5]["message"] == (
        "invoices[1].status must be one of: draft, sent, paid, void"
    )

    # Errors from the database: 409 with the path of the field.
    status, answer = await shop.call(
        "POST", "customer", {"name": "Umbrella", "invoices": {"data": [{"number": "INV-1001"}]}}
    )
    assert (status, answer["error"]["message"]) == (409, "A record with this value already exists")
    assert details(answer) == [
        {
            "message": "invoices[0].number must be unique: another invoice record has this value",
            "field": "invoices[0].number",
            "rule": "unique",
        }
    ]
    status, answer = await shop.call("PUT", "customer/globex", {"email": "billing@acme.test"})
    assert status == 409 and details(answer)[0]["field"] == "email"

    # "Slugs".
    assert (await created(shop, "customer", {"name": "Acme Café"}))["slug"] == "acme-cafe-2"
    assert (await created(shop, "customer", {"name": "Acme Café", "slug": "Acme-HQ"}))[
        "slug"
    ] == "Acme-HQ"
    record = (
        await shop.ok(
            "PUT", "customer/acme-cafe-2", {"name": "Acme Corp", "email": "ops@acme.test"}
        )
    )["data"]
    assert (record["name"], record["slug"], record["email"]) == (
        "Acme Corp",
        "acme-cafe-2",
        "ops@acme.test",
    )

    # "Deletes": restrict, then cascade + detach, then the customer can go.
    status, answer = await shop.call("DELETE", "customer/acme-cafe")
    assert (status, answer) == (
        409,
        {
            "error": {
                "code": "CONFLICT",
                "message": "Cannot delete: 1 related invoice records exist",
            }
        },
    )
    assert await shop.ok("DELETE", f"invoice/{inv}") == {"data": {"id": inv}}
    assert (await listed(shop, "item", **{"filter[invoice_id]": inv}))["meta"]["total"] == 0
    assert await shop.ok("DELETE", "customer/acme-cafe") == {"data": {"id": "acme-cafe"}}
    # A hard-deleted tag takes its links along.
    assert await shop.ok("DELETE", f"tag/{export}") == {"data": {"id": export}}
    page = await listed(shop, "invoice", **{"filter[number]": "INV-2001", "include": "tags"})
    assert page["data"][0]["tags"] == []
