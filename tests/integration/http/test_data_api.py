"""The data API over HTTP on the invoicing example: list/get/create/update/delete, filters,
sorting, paging, includes, nested writes, deletes with policies, and bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.apps import AppClient, example_schema, new_app


@pytest.fixture
async def shop(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema(example_schema("invoicing"))
    return app


async def make_customer(shop: AppClient, name: str, **extra: Any) -> dict[str, Any]:
    return dict((await shop.ok("POST", "customer", {"name": name, **extra}, 201))["data"])


async def make_invoice(shop: AppClient, number: str, **extra: Any) -> dict[str, Any]:
    return dict((await shop.ok("POST", "invoice", {"number": number, **extra}, 201))["data"])


async def test_create_returns_the_record_with_wire_encodings(shop: AppClient) -> None:
    acme = await make_customer(shop, "Acme Crème Brûlée!")
    assert acme["slug"] == "acme-creme-brulee"
    assert acme["vip"] is False
    assert acme["deleted_at"] is None  # soft-delete entity without a declared deleted_at
    assert acme["created_at"].endswith("Z")
    inv = await make_invoice(
        shop,
        "INV-1",
        customer_id=acme["id"],
        total="12.5",
        issued_on="2026-02-22",
        notes={"terms": "net 30", "lines": [1, 2]},
    )
    assert inv["total"] == "12.50"  # decimals are strings, scale kept
    assert inv["issued_on"] == "2026-02-22"
    assert inv["notes"] == {"terms": "net 30", "lines": [1, 2]}
    assert inv["status"] == "draft"
    assert set(inv) == {
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
    }


async def test_nested_create_with_children_and_m2m_in_one_request(shop: AppClient) -> None:
    tags = [(await shop.ok("POST", "tag", {"label": lbl}, 201))["data"] for lbl in ("a", "b")]
    body = {
        "number": "INV-9",
        "items": {
            "data": [
                {"description": "widget", "qty": 2, "unit_price": "3.50"},
                {"description": "gadget", "unit_price": 10},
            ]
        },
        "tags": {"data": [{"id": tags[0]["id"]}, {"id": tags[1]["id"]}, {"id": tags[0]["id"]}]},
    }
    inv = (await shop.ok("POST", "invoice", body, 201))["data"]
    assert "items" not in inv  # write responses carry no nested children
    got = (await shop.ok("GET", f"invoice/{inv['id']}?include=items,tags"))["data"]
    assert sorted((i["description"], i["qty"]) for i in got["items"]) == [
        ("gadget", 1),
        ("widget", 2),
    ]
    assert all(i["invoice_id"] == inv["id"] for i in got["items"])
    assert sorted(t["label"] for t in got["tags"]) == ["a", "b"]


async def test_failing_child_rolls_back_the_whole_write(shop: AppClient) -> None:
    body = {
        "number": "INV-X",
        "items": {
            "data": [
                {"description": "ok", "unit_price": 1},
                {"description": "bad", "unit_price": "lots"},
            ]
        },
    }
    status, err = await shop.call("POST", "invoice", body)
    assert status == 422
    fields = [d.get("field") for d in err["error"]["details"]]
    assert any(f and f.startswith("items[1]") for f in fields), err
    assert (await shop.ok("GET", "invoice"))["meta"]["total"] == 0
    assert (await shop.ok("GET", "item"))["meta"]["total"] == 0


async def test_a_duplicate_among_new_children_names_that_child(shop: AppClient) -> None:
    """New children without hooks go in one multi-row INSERT; when it fails, the write runs
    again child by child, so the 409 still names the child (and nothing is written)."""
    await make_invoice(shop, "INV-TAKEN")
    body = {
        "name": "Acme",
        "invoices": {"data": [{"number": "INV-A"}, {"number": "INV-B"}, {"number": "INV-TAKEN"}]},
    }
    status, err = await shop.call("POST", "customer", body)
    assert status == 409, err
    assert [(d["field"], d["rule"]) for d in err["error"]["details"]] == [
        ("invoices[2].number", "unique")
    ]
    assert (await shop.ok("GET", "customer"))["meta"]["total"] == 0
    assert (await shop.ok("GET", "invoice"))["meta"]["total"] == 1
    body["invoices"]["data"][2]["number"] = "INV-C"
    customer = (await shop.ok("POST", "customer", body, 201))["data"]
    assert customer["slug"] == "acme"  # the record as stored, without a re-read
    got = (await shop.ok("GET", f"customer/{customer['id']}?include=invoices"))["data"]
    assert sorted(i["number"] for i in got["invoices"]) == ["INV-A", "INV-B", "INV-C"]
    assert got["updated_at"] == customer["updated_at"]


async def test_includes_in_both_directions_and_empty_values(shop: AppClient) -> None:
    acme = await make_customer(shop, "Acme")
    lonely = await make_customer(shop, "Lonely")
    inv = await make_invoice(shop, "INV-2", customer_id=acme["id"])
    orphan = await make_invoice(shop, "INV-3")
    listed = (await shop.ok("GET", "customer?include=invoices&sort=name"))["data"]
    by_name = {c["name"]: c for c in listed}
    assert [i["number"] for i in by_name["Acme"]["invoices"]] == ["INV-2"]
    assert by_name["Lonely"]["invoices"] == []
    assert lonely["id"] == by_name["Lonely"]["id"]
    rows = (await shop.ok("GET", "invoice?include=customer&sort=number"))["data"]
    assert rows[0]["customer"]["id"] == acme["id"]
    assert rows[1]["customer"] is None
    assert rows[1]["id"] == orphan["id"]
    got = (await shop.ok("GET", f"invoice/{inv['id']}?include=items,tags"))["data"]
    assert got["items"] == [] and got["tags"] == []


async def test_every_filter_operator(shop: AppClient) -> None:
    for n, total, status in (
        ("A-1", "10.00", "draft"),
        ("A-2", "20.00", "sent"),
        ("A-3", "30.00", "paid"),
    ):
        await make_invoice(shop, n, total=total, status=status)

    async def numbers(qs: str) -> list[str]:
        body = await shop.ok("GET", f"invoice?sort=number&{qs}")
        return [r["number"] for r in body["data"]]

    assert await numbers("filter[status]=sent") == ["A-2"]
    assert await numbers("filter[status.eq]=sent") == ["A-2"]
    assert await numbers("filter[status.neq]=sent") == ["A-1", "A-3"]
    assert await numbers("filter[total.gt]=10") == ["A-2", "A-3"]
    assert await numbers("filter[total.gte]=20") == ["A-2", "A-3"]
    assert await numbers("filter[total.lt]=20") == ["A-1"]
    assert await numbers("filter[total.lte]=20") == ["A-1", "A-2"]
    assert await numbers("filter[status.in]=draft, paid") == ["A-1", "A-3"]
    assert await numbers("filter[status.not_in]=draft,paid") == ["A-2"]
    assert await numbers("filter[number.like]=A-%25") == ["A-1", "A-2", "A-3"]
    assert await numbers("filter[status]=sent&filter[total.gte]=20") == ["A-2"]


async def test_sort_multi_key_and_paging_meta(shop: AppClient) -> None:
    for i in range(7):
        await make_invoice(shop, f"P-{i}", status="sent" if i % 2 else "draft")
    body = await shop.ok("GET", "invoice?sort=status,-number&page=2&per_page=3")
    assert body["meta"] == {"page": 2, "per_page": 3, "total": 7}
    assert [r["number"] for r in body["data"]] == ["P-0", "P-5", "P-3"]
    body = await shop.ok("GET", "invoice?page=9&per_page=3")
    assert body["data"] == [] and body["meta"]["total"] == 7


@pytest.mark.parametrize(
    ("qs", "page", "per_page"),
    [
        ("per_page=0", 1, 25),
        ("per_page=-1", 1, 25),
        ("per_page=1000000000", 1, 100),
        ("page=abc", 1, 25),
        ("page=0", 1, 25),
        ("per_page=abc&page=-3", 1, 25),
    ],
)
async def test_bad_paging_values_are_ignored_or_capped(
    shop: AppClient, qs: str, page: int, per_page: int
) -> None:
    body = await shop.ok("GET", f"invoice?{qs}")
    assert (body["meta"]["page"], body["meta"]["per_page"]) == (page, per_page)


@pytest.mark.parametrize(
    ("qs", "status", "code"),
    [
        ("filter[colour]=red", 400, "UNKNOWN_FIELD"),
        ("filter[name;drop table x]=1", 400, "UNKNOWN_FIELD"),
        ("filter[num'ber]=1", 400, "UNKNOWN_FIELD"),
        ("filter[nümber]=1", 400, "UNKNOWN_FIELD"),
        ("filter[total.gt]=abc", 400, "INVALID_PAYLOAD"),
        ("filter[id]=not-a-uuid", 400, "INVALID_PAYLOAD"),
        ("filter[issued_on.gt]=yesterday", 400, "INVALID_PAYLOAD"),
        ("filter[total.between]=1", 400, "INVALID_PAYLOAD"),
        ("sort=colour", 400, "UNKNOWN_FIELD"),
        ("sort=-", 400, "UNKNOWN_FIELD"),
        ("include=nothing", 400, "UNKNOWN_FIELD"),
    ],
)
async def test_bad_list_queries_are_400(shop: AppClient, qs: str, status: int, code: str) -> None:
    got, body = await shop.call("GET", f"invoice?{qs}")
    assert got == status, body
    assert body["error"]["code"] == code


async def test_in_with_empty_and_huge_lists(shop: AppClient) -> None:
    await make_invoice(shop, "E-1")
    # engine/read/query.py: an empty `in` list matches nothing, an empty `not_in` everything.
    body = await shop.ok("GET", "invoice?filter[number.in]=")
    assert body["meta"]["total"] == 0 and body["data"] == []
    body = await shop.ok("GET", "invoice?filter[number.not_in]=")
    assert body["meta"]["total"] == 1
    # At most MAX_LIST_VALUES (1,000) items; one more is the contract's 400.
    most = ",".join(["E-1", *(f"N{i}" for i in range(999))])
    body = await shop.ok("GET", f"invoice?filter[number.in]={most}")
    assert body["meta"]["total"] == 1
    status, body = await shop.call("GET", f"invoice?filter[number.in]={most},N-extra")
    assert status == 400, body
    message = "Invalid filter value for number: at most 1000 values"
    assert body["error"]["code"] == "INVALID_PAYLOAD"
    assert body["error"]["message"] == message
    assert body["error"]["details"] == [{"field": "number", "message": message, "rule": "range"}]


async def test_get_by_id_slug_and_bad_ids(shop: AppClient) -> None:
    acme = await make_customer(shop, "Acme Inc")
    assert (await shop.ok("GET", f"customer/{acme['id']}"))["data"]["name"] == "Acme Inc"
    assert (await shop.ok("GET", "customer/acme-inc"))["data"]["id"] == acme["id"]
    for bad in ("12345", "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        status, body = await shop.call("GET", f"invoice/{bad}")
        assert status == 404
        assert body["error"] == {"code": "NOT_FOUND", "message": f"invoice with id {bad} not found"}
    status, body = await shop.call("GET", "item/abc")
    assert status == 404


async def test_slug_collisions_get_suffixes(shop: AppClient) -> None:
    slugs = [(await make_customer(shop, "Same Name"))["slug"] for _ in range(3)]
    assert slugs == ["same-name", "same-name-2", "same-name-3"]


async def test_update_is_partial_and_by_slug(shop: AppClient) -> None:
    acme = await make_customer(shop, "Acme", email="a@acme.test")
    body = await shop.ok("PUT", "customer/acme", {"vip": True})
    assert body["data"]["vip"] is True
    assert body["data"]["email"] == "a@acme.test"
    assert body["data"]["id"] == acme["id"]
    status, err = await shop.call("PUT", "customer/acme", {"name": None})
    assert status == 422
    assert err["error"]["details"][0]["rule"] == "required"


async def test_write_validation_errors(shop: AppClient) -> None:
    status, body = await shop.call(
        "POST", "invoice", {"number": "", "status": "bogus", "colour": "red"}
    )
    assert status == 422
    assert body["error"]["details"] == [
        {"field": "colour", "rule": "unknown", "message": "Unknown field or relation: colour"}
    ]
    status, body = await shop.call("POST", "invoice", {"number": "", "status": "bogus"})
    assert status == 422
    rules = {(d["field"], d["rule"]) for d in body["error"]["details"]}
    assert rules == {("number", "required"), ("status", "enum")}
    status, body = await shop.call(
        "POST", "invoice", {"number": 5, "total": "x", "issued_on": "soon"}
    )
    assert status == 422
    assert {d["field"] for d in body["error"]["details"]} == {"number", "total", "issued_on"}
    assert {d["rule"] for d in body["error"]["details"]} == {"type"}


async def test_unique_violation_is_409_naming_the_field(shop: AppClient) -> None:
    await make_invoice(shop, "DUP-1")
    status, body = await shop.call("POST", "invoice", {"number": "DUP-1"})
    assert status == 409
    assert body["error"]["code"] == "CONFLICT"
    assert body["error"]["details"][0]["field"] == "number"
    assert body["error"]["details"][0]["rule"] == "unique"


async def test_unknown_write_mode_and_bad_nested_shapes_are_422(shop: AppClient) -> None:
    status, body = await shop.call(
        "POST", "invoice", {"number": "W-1", "items": {"_write_mode": "merge", "data": []}}
    )
    assert status == 422
    status, body = await shop.call("POST", "invoice", {"number": "W-2", "items": {"data": "x"}})
    assert body["error"]["details"][0]["field"] == "items.data"
    assert status == 422
    assert (await shop.ok("GET", "invoice"))["meta"]["total"] == 0


async def test_nesting_works_at_depth_and_stops_at_the_limit(shop: AppClient) -> None:
    await shop.ok(
        "POST",
        "_admin/entities",
        {
            "name": "node",
            "table": "nodes",
            "primary_key": {"field": "id", "type": "uuid", "generated": True},
            "fields": [
                {"name": "id", "type": "uuid"},
                {"name": "label", "type": "string"},
                {"name": "parent_id", "type": "uuid"},
            ],
        },
        201,
    )
    await shop.ok(
        "POST",
        "_admin/relations",
        {
            "name": "children",
            "type": "one_to_many",
            "source": "node",
            "target": "node",
            "source_key": "id",
            "target_key": "parent_id",
            "on_delete": "cascade",
        },
        201,
    )

    def chain(depth: int) -> dict[str, Any]:
        body: dict[str, Any] = {"label": "n0"}
        cursor = body
        for i in range(depth):
            child: dict[str, Any] = {"label": f"n{i + 1}"}
            cursor["children"] = {"data": [child]}
            cursor = child
        return body

    root = (await shop.ok("POST", "node", chain(3), 201))["data"]
    assert (await shop.ok("GET", "node"))["meta"]["total"] == 4
    child = (await shop.ok("GET", f"node/{root['id']}?include=children"))["data"]["children"][0]
    assert child["label"] == "n1" and child["parent_id"] == root["id"]
    status, err = await shop.call("POST", "node", chain(40))
    assert status == 422
    assert "depth" in str(err["error"]).lower()
    assert (await shop.ok("GET", "node"))["meta"]["total"] == 4  # nothing of it written


async def test_replace_and_diff_modes_on_children(shop: AppClient) -> None:
    inv = (
        await shop.ok(
            "POST",
            "invoice",
            {
                "number": "R-1",
                "items": {
                    "data": [
                        {"description": "a", "unit_price": 1},
                        {"description": "b", "unit_price": 2},
                    ]
                },
            },
            201,
        )
    )["data"]
    items = (await shop.ok("GET", f"invoice/{inv['id']}?include=items"))["data"]["items"]
    a = next(i for i in items if i["description"] == "a")
    b = next(i for i in items if i["description"] == "b")
    await shop.ok(
        "PUT",
        f"invoice/{inv['id']}",
        {
            "items": {
                "data": [
                    {"id": a["id"], "qty": 9},
                    {"id": b["id"], "_delete": True},
                    {"description": "c", "unit_price": 3},
                ]
            }
        },
    )
    items = (await shop.ok("GET", f"invoice/{inv['id']}?include=items"))["data"]["items"]
    assert sorted((i["description"], i["qty"]) for i in items) == [("a", 9), ("c", 1)]
    await shop.ok(
        "PUT",
        f"invoice/{inv['id']}",
        {"items": {"_write_mode": "replace", "data": [{"description": "only", "unit_price": 5}]}},
    )
    items = (await shop.ok("GET", f"invoice/{inv['id']}?include=items"))["data"]["items"]
    assert [i["description"] for i in items] == ["only"]


async def test_delete_policies(shop: AppClient) -> None:
    acme = await make_customer(shop, "Acme")
    inv = (
        await shop.ok(
            "POST",
            "invoice",
            {
                "number": "X-1",
                "customer_id": acme["id"],
                "items": {"data": [{"description": "a", "unit_price": 1}]},
            },
            201,
        )
    )["data"]
    status, body = await shop.call("DELETE", f"customer/{acme['id']}")
    assert status == 409
    assert body["error"]["message"] == "Cannot delete: 1 related invoice records exist"
    assert (await shop.ok("DELETE", f"invoice/{inv['id']}")) == {"data": {"id": inv["id"]}}
    assert (await shop.ok("GET", "item"))["meta"]["total"] == 0  # cascade (hard)
    status, _ = await shop.call("GET", f"invoice/{inv['id']}")
    assert status == 404  # soft-deleted: hidden
    assert (await shop.ok("DELETE", "customer/acme"))["data"] == {"id": "acme"}
    status, _ = await shop.call("DELETE", f"customer/{acme['id']}")
    assert status == 404


async def test_unknown_entity_and_non_object_bodies(shop: AppClient) -> None:
    status, body = await shop.call("GET", "ghost")
    assert status == 404
    assert body["error"] == {"code": "UNKNOWN_ENTITY", "message": "Unknown entity: ghost"}
    resp = await shop.client.post(
        shop.url("invoice"),
        data=b"[1,2]",
        headers={**shop.headers, "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == "Invalid JSON body"


async def test_data_routes_require_a_token(shop: AppClient) -> None:
    resp = await shop.client.get(shop.url("invoice"))
    assert resp.status == 401


async def test_reverse_many_to_many_include_lists_the_linked_sources(shop: AppClient) -> None:
    tag = (await shop.ok("POST", "tag", {"label": "urgent"}, 201))["data"]
    unused = (await shop.ok("POST", "tag", {"label": "unused"}, 201))["data"]
    for number in ("M-1", "M-2"):
        await shop.ok(
            "POST", "invoice", {"number": number, "tags": {"data": [{"id": tag["id"]}]}}, 201
        )
    await shop.ok("POST", "invoice", {"number": "M-3"}, 201)
    rows = (await shop.ok("GET", "tag?include=invoice&sort=label"))["data"]
    by_label = {r["label"]: r for r in rows}
    assert sorted(i["number"] for i in by_label["urgent"]["invoice"]) == ["M-1", "M-2"]
    assert by_label["unused"]["invoice"] == []
    got = (await shop.ok("GET", f"tag/{unused['id']}?include=invoice_tags"))["data"]
    assert got["invoice_tags"] == []


async def test_substring_operators_take_their_value_literally(client: Any) -> None:
    """`contains`, `starts_with` and `ends_with` (issue 14): case-insensitive, and `%`, `_`, `\\`
    in the value match only themselves."""
    app = await new_app(client)
    note = {
        "name": "note",
        "table": "notes",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
    }
    await app.ok("POST", "_admin/entities", note, 201)
    for text in ("Sale 50% off", "Sale 500 off", "a_b", "axb", "back\\slash", "backxslash"):
        await app.ok("POST", "note", {"text": text}, 201)

    async def texts(op: str, value: str) -> list[str]:
        resp = await app.client.get(
            app.url("note"),
            params={f"filter[text.{op}]": value, "sort": "text"},
            headers=app.headers,
        )
        assert resp.status == 200, await resp.text()
        return [r["text"] for r in (await resp.json())["data"]]

    assert await texts("contains", "50%") == ["Sale 50% off"]
    assert await texts("contains", "SALE") == ["Sale 50% off", "Sale 500 off"]
    assert await texts("starts_with", "a_") == ["a_b"]
    assert await texts("ends_with", "\\slash") == ["back\\slash"]
    assert await texts("starts_with", "%") == []
    resp = await app.client.get(
        app.url("note"), params={"filter[id.contains]": "a"}, headers=app.headers
    )
    assert resp.status == 400
    assert (
        "contains applies only to string and text fields" in (await resp.json())["error"]["message"]
    )


async def test_paths_starting_with_an_underscore_belong_to_entity_sub_routes(client: Any) -> None:
    """`/{entity}/_...` never reaches get-by-id (capabilities hang `_bulk`, `_export`, ...
    there), and no id or slug may start with `_`, so no record is ever shadowed (issue 14)."""
    app = await new_app(client)
    page = {
        "name": "page",
        "table": "pages",
        "primary_key": {"field": "code", "type": "string"},
        "slug": {"field": "slug"},
        "fields": [
            {"name": "code", "type": "string"},
            {"name": "slug", "type": "string", "unique": True},
        ],
    }
    await app.ok("POST", "_admin/entities", page, 201)
    status, payload = await app.call("POST", "page", {"code": "_bulk", "slug": "ok"})
    assert status == 422, payload
    assert payload["error"]["details"][0]["rule"] == "reserved"
    status, payload = await app.call("POST", "page", {"code": "a", "slug": "_export"})
    assert status == 422, payload
    assert payload["error"]["details"][0]["field"] == "slug"
    await app.ok("POST", "page", {"code": "home", "slug": "home-page"}, 201)
    status, payload = await app.call("GET", "page/_bulk")
    assert status == 404 and payload["error"]["code"] == "NOT_FOUND", payload
    assert (
        "route" in payload["error"]["message"].lower()
        or "not found" in payload["error"]["message"].lower()
    )
    assert (await app.ok("GET", "page/home-page"))["data"]["code"] == "home"
