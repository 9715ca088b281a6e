"""The examples of docs/indexes-and-large-tables.md, run for real on a fresh app with the
invoicing schema and the page's four invoices (the answers the page shows)."""

from __future__ import annotations

from typing import Any

from tests.support.apps import example_schema, new_app
from tests.support.helpers import wait_until

INVOICES = [
    {"number": "INV-2001", "status": "sent", "issued_on": "2026-02-01"},
    {"number": "INV-2002", "status": "paid", "issued_on": "2026-02-15"},
    {"number": "INV-2003", "issued_on": "2026-03-01"},
    {"number": "INV-2004", "status": "void"},
]


async def test_indexes_page_examples(client: Any) -> None:
    shop = await new_app(client)
    schema = example_schema("invoicing")
    await shop.load_schema(schema)
    for invoice in INVOICES:
        await shop.ok("POST", "invoice", invoice, 201)
    invoice_def = next(e for e in schema["entities"] if e["name"] == "invoice")

    # "Declaring indexes"
    declared = {**invoice_def, "indexes": [{"fields": ["status", "-issued_on"]}]}
    saved = (await shop.ok("PUT", "_admin/entities/invoice", declared))["data"]
    assert saved["indexes"] == [{"fields": ["status", "-issued_on"], "unique": False}]

    async def ready() -> bool:
        row = (await shop.ok("GET", "_admin/entities/invoice"))["data"]
        return [i["state"] for i in row["indexes"]] == ["ready"]

    await wait_until(ready, "the index build", timeout=20, interval=0.05)
    row = (await shop.ok("GET", "_admin/entities/invoice"))["data"]
    assert row["indexes"] == [
        {
            "name": "rx_invoices_status_dissued_on_eb1e9a648d",
            "fields": ["status", "-issued_on"],
            "unique": False,
            "partial": True,
            "state": "ready",
        }
    ]

    # "Limits and validation"
    bad = {**invoice_def, "indexes": [{"fields": ["status", "status"], "uniqe": True}]}
    status, body = await shop.call("PUT", "_admin/entities/invoice", bad)
    assert status == 422
    assert [[d["field"], d["message"]] for d in body["error"]["details"]] == [
        [
            "indexes[0].uniqe",
            'unknown key "uniqe" in index (did you mean "unique"? allowed keys: fields, unique)',
        ],
        ["indexes[0].fields[1]", 'indexes[0].fields[1]: field "status" is listed twice'],
    ]

    # "Skipping the total"
    body = await shop.ok("GET", "invoice?sort=number&per_page=3&total=false")
    assert [r["number"] for r in body["data"]] == ["INV-2001", "INV-2002", "INV-2003"]
    meta = {k: v for k, v in body["meta"].items() if k != "next_cursor"}
    assert meta == {"page": 1, "per_page": 3, "has_more": True}

    # "Paging by cursor"
    first = await shop.ok("GET", "invoice?sort=number&per_page=2&total=false")
    cursor = first["meta"]["next_cursor"]
    status, second = await shop.call(
        "GET",
        "invoice",
        params={"sort": "number", "per_page": "2", "total": "false", "after": cursor},
    )
    assert [r["number"] for r in second["data"]] == ["INV-2003", "INV-2004"]
    assert second["meta"] == {"per_page": 2, "has_more": False}
    status, body = await shop.call("GET", "invoice", params={"sort": "-number", "after": cursor})
    message = (
        "Invalid cursor: it was made for sort=number,id; ask again with that sort, or without after"
    )
    assert status == 400
    assert body["error"] == {
        "code": "INVALID_PAYLOAD",
        "message": message,
        "details": [{"field": "after", "message": message, "rule": "cursor"}],
    }

    # "Guidance"
    await shop.ok("GET", "invoice?filter[status]=paid&sort=-issued_on")
    await shop.call("GET", "invoice", params={"filter[issued_on.gte]": "2026-02-01"})
    found = (await shop.ok("GET", "_admin/indexes/guidance"))["data"]
    assert [
        {k: f[k] for k in ("entity", "filters", "sort", "seen", "suggested_index")} for f in found
    ] == [
        {
            "entity": "invoice",
            "filters": [{"field": "issued_on", "op": "gte"}],
            "sort": "id",
            "seen": 1,
            "suggested_index": {"fields": ["issued_on"], "unique": False},
        }
    ]
