"""Rules over HTTP: the admin routes (`/_admin/rules`) and every rule type and hook applied by the
data API, inside the write transaction, on a real PostgreSQL."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.support.apps import AppClient, example_schema, new_app
from tests.support.databases import dsn_for

PK = {"field": "id", "type": "uuid", "generated": True}
ORDER = {
    "name": "order",
    "table": "orders",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "number", "type": "string"},
        {"name": "code", "type": "string"},
        {"name": "status", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "unit_price", "type": "decimal", "precision": 2},
        {"name": "total", "type": "decimal", "precision": 2},
        {"name": "paid_on", "type": "date"},
        {"name": "created_at", "type": "timestamp", "auto": "create"},
    ],
}
LINE = {
    "name": "line",
    "table": "lines",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "order_id", "type": "uuid"},
        {"name": "qty", "type": "int"},
        {"name": "kind", "type": "string"},
    ],
}
ORDER_LINES = {
    "name": "order_lines",
    "type": "one_to_many",
    "source": "order",
    "target": "line",
    "source_key": "id",
    "target_key": "order_id",
}


async def shop(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema({"entities": [ORDER, LINE], "relations": [ORDER_LINES]})
    return app


async def add_rule(app: AppClient, kind: str, hook: str = "before_write", **extra: Any) -> str:
    priority = extra.pop("priority", 0)
    entity = extra.pop("entity", "order")
    body = {"entity": entity, "hook": hook, "type": kind, "definition": extra, "priority": priority}
    return str((await app.ok("POST", "_admin/rules", body, 201))["data"]["id"])


def details(payload: dict[str, Any]) -> list[dict[str, str]]:
    assert payload["error"]["code"] == "VALIDATION_FAILED", payload
    return list(payload["error"]["details"])


def count_rows(pg_dsn: str, app: AppClient, table: str) -> int:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    assert row is not None
    return int(row[0])


# ------------------------------------------------------------------------------ admin routes


async def test_rule_crud_round_trip(client: Any) -> None:
    app = await shop(client)
    body = {
        "entity": "order",
        "hook": "before_write",
        "type": "expression",
        "definition": {
            "expression": "record.status == 'paid' && record.paid_on == nil",
            "message": "Payment date is required when paid",
            "stop_on_fail": True,
        },
        "priority": 10,
    }
    created = (await app.ok("POST", "_admin/rules", body, 201))["data"]
    rule_id = created.pop("id")
    uuid.UUID(rule_id)
    assert created == {**body, "active": True}

    row = (await app.ok("GET", f"_admin/rules/{rule_id}"))["data"]
    assert set(row) == {
        "id",
        "entity",
        "hook",
        "type",
        "definition",
        "priority",
        "active",
        "created_at",
        "updated_at",
    }
    assert row["definition"] == body["definition"]

    # PUT keeps every key it omits (C28).
    updated = (await app.ok("PUT", f"_admin/rules/{rule_id}", {"priority": 3}))["data"]
    assert updated == {**body, "id": rule_id, "priority": 3, "active": True}

    await add_rule(app, "field", field="number", operator="required", priority=1)
    listing = (await app.ok("GET", "_admin/rules"))["data"]
    assert [r["priority"] for r in listing] == [1, 3]

    deleted = (await app.ok("DELETE", f"_admin/rules/{rule_id}"))["data"]
    assert deleted == {"id": rule_id, "deleted": True}
    status, payload = await app.call("GET", f"_admin/rules/{rule_id}")
    assert status == 404
    assert payload["error"] == {"code": "NOT_FOUND", "message": f"Rule not found: {rule_id}"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_and_malformed_rule_ids_are_404(client: Any, method: str) -> None:
    app = await shop(client)
    for raw in (str(uuid.uuid4()), "not-a-uuid"):
        body = {"priority": 1} if method == "PUT" else None
        status, payload = await app.call(method, f"_admin/rules/{raw}", body)
        assert status == 404, payload
        assert payload["error"]["message"] == f"Rule not found: {raw}"


async def test_rule_bodies_are_validated(client: Any) -> None:
    app = await shop(client)
    status, payload = await app.call(
        "POST",
        "_admin/rules",
        {"entity": "order", "hook": "before_write", "type": "field", "definition": {}, "colour": 1},
    )
    assert status == 400 and payload["error"]["code"] == "INVALID_PAYLOAD"
    assert payload["error"]["details"][0]["field"] == "colour"

    cases: list[tuple[dict[str, Any], str]] = [
        ({"hook": "before_write", "type": "field", "definition": {}}, "entity is required"),
        (
            {
                "entity": "ghost",
                "hook": "before_write",
                "type": "expression",
                "definition": {"expression": "true"},
            },
            "entity not found: ghost",
        ),
        (
            {
                "entity": "order",
                "hook": "after_save",
                "type": "expression",
                "definition": {"expression": "true"},
            },
            "invalid hook: after_save (must be before_write, before_delete, or after_write)",
        ),
        (
            {"entity": "order", "hook": "before_write", "type": "magic", "definition": {}},
            "invalid rule type: magic (must be field, expression, or computed)",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "field",
                "definition": {"field": "number", "operator": "like", "value": "x"},
            },
            "invalid operator: like",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "field",
                "definition": {"field": "colour", "operator": "required"},
            },
            "unknown field: order.colour",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "field",
                "definition": {"field": "number", "operator": "pattern", "value": "([a-z"},
            },
            "invalid pattern: ",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "field",
                "definition": {"field": "qty", "operator": "min", "value": "one"},
            },
            "min needs a number as value",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "expression",
                "definition": {"expression": "record.qty >"},
            },
            "invalid expression: ",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "computed",
                "definition": {"field": "created_at", "expression": "now"},
            },
            "computed field order.created_at is not writable",
        ),
        (
            {
                "entity": "order",
                "hook": "before_write",
                "type": "computed",
                "definition": {"field": "discount", "expression": "1"},
            },
            "unknown field: order.discount",
        ),
    ]
    for body, expected in cases:
        status, payload = await app.call("POST", "_admin/rules", body)
        assert status == 422, (body, payload)
        assert payload["error"]["code"] == "VALIDATION_FAILED"
        assert payload["error"]["message"].startswith(expected), (expected, payload)
    status, payload = await app.call(
        "POST",
        "_admin/rules",
        {
            "entity": "order",
            "hook": "before_write",
            "type": "expression",
            "definition": {"expression": "record.qty > (1"},
        },
    )
    assert "position" in payload["error"]["message"]
    assert (await app.ok("GET", "_admin/rules"))["data"] == []


async def test_non_admins_cannot_manage_rules(client: Any, pg_dsn: str) -> None:
    from tests.support.db_users import add_user, app_login

    app = await shop(client)
    add_user(pg_dsn, app.name, "clerk@x.io", "pw-long-enough", ["clerk"])
    resp = await app_login(client, app.name, "clerk@x.io", "pw-long-enough")
    token = (await resp.json())["data"]["access_token"]
    resp = await client.get(app.url("_admin/rules"), headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403


# ------------------------------------------------------------------------- rules on writes


async def test_field_rules_report_every_violation_together(client: Any) -> None:
    app = await shop(client)
    await add_rule(
        app, "field", field="number", operator="min_length", value=3, message="Number too short"
    )
    await add_rule(app, "field", field="qty", operator="min", value=1)
    await add_rule(app, "field", field="qty", operator="max", value=10, priority=1)
    await add_rule(app, "field", field="code", operator="pattern", value="^[A-Z]{2}-[0-9]+$")
    await add_rule(app, "field", field="status", operator="enum", value=["new", "paid"])
    await add_rule(app, "field", field="unit_price", operator="required")

    status, payload = await app.call(
        "POST", "order", {"number": "A", "qty": 0, "code": "ab-1", "status": "lost"}
    )
    assert status == 422
    assert payload["error"]["message"] == "Validation failed"
    assert sorted((d["field"], d["rule"], d["message"]) for d in details(payload)) == [
        ("code", "pattern", "field code failed pattern validation"),
        ("number", "min_length", "Number too short"),
        ("qty", "min", "field qty failed min validation"),
        ("status", "enum", "field status failed enum validation"),
        ("unit_price", "required", "field unit_price failed required validation"),
    ]
    good = {"number": "A-1", "qty": 2, "code": "AB-12", "status": "new", "unit_price": "3.50"}
    order = (await app.ok("POST", "order", good, 201))["data"]
    # An update checks only what it sends (spec: "in the payload").
    await app.ok("PUT", f"order/{order['id']}", {"qty": 5})
    status, payload = await app.call("PUT", f"order/{order['id']}", {"qty": 11})
    assert status == 422 and [d["rule"] for d in details(payload)] == ["max"]


async def test_catastrophic_pattern_gives_up_quickly(client: Any) -> None:
    app = await shop(client)
    await add_rule(app, "field", field="code", operator="pattern", value="^(a+)+$")
    started = time.monotonic()
    status, payload = await app.call("POST", "order", {"code": "a" * 20000 + "!"})
    assert status == 422 and details(payload)[0]["rule"] == "pattern"
    assert time.monotonic() - started < 5
    await app.ok("POST", "order", {"code": "aaaa"}, 201)


async def test_expression_rules_see_the_merged_record_on_update(client: Any) -> None:
    app = await shop(client)
    await add_rule(
        app,
        "expression",
        expression="record.status == 'paid' && record.paid_on == nil",
        message="Payment date is required when paid",
    )
    await add_rule(
        app,
        "expression",
        expression="action === 'update' && old.status == 'paid'",
        message="Paid orders are frozen",
    )
    order = (await app.ok("POST", "order", {"number": "A-1", "status": "new"}, 201))["data"]
    status, payload = await app.call("PUT", f"order/{order['id']}", {"status": "paid"})
    assert status == 422
    assert details(payload) == [
        {"message": "Payment date is required when paid", "rule": "expression"}
    ]
    await app.ok("PUT", f"order/{order['id']}", {"paid_on": "2026-02-01"})
    await app.ok("PUT", f"order/{order['id']}", {"status": "paid"})  # paid_on is stored
    status, payload = await app.call("PUT", f"order/{order['id']}", {"number": "A-2"})
    assert details(payload) == [{"message": "Paid orders are frozen", "rule": "expression"}]


async def test_expression_rules_see_user_and_now(client: Any) -> None:
    app = await shop(client)
    await add_rule(app, "expression", expression="!('admin' in user.roles)", message="admins only")
    await add_rule(
        app,
        "expression",
        expression="record.paid_on != nil && record.paid_on > now",
        message="no future payments",
    )
    await app.ok("POST", "order", {"number": "A-1"}, 201)
    _status, payload = await app.call("POST", "order", {"paid_on": "2999-01-01"})
    assert details(payload) == [{"message": "no future payments", "rule": "expression"}]


async def test_stop_on_fail_stops_at_the_first_failing_rule(client: Any) -> None:
    app = await shop(client)
    await add_rule(app, "field", field="number", operator="required", stop_on_fail=True)
    await add_rule(app, "field", field="qty", operator="min", value=1, priority=1)
    await add_rule(app, "expression", expression="true", message="never reached")
    _status, payload = await app.call("POST", "order", {"qty": 0})
    assert [d["rule"] for d in details(payload)] == ["required"]


async def test_inactive_rules_are_not_applied(client: Any) -> None:
    app = await shop(client)
    rule_id = await add_rule(app, "expression", expression="true", message="always")
    assert (await app.call("POST", "order", {}))[0] == 422
    await app.ok("PUT", f"_admin/rules/{rule_id}", {"active": False})
    await app.ok("POST", "order", {}, 201)


async def test_computed_fields_are_written_on_create_and_update(client: Any) -> None:
    app = await shop(client)
    await add_rule(app, "computed", field="total", expression="record.qty * record.unit_price")
    await add_rule(
        app, "computed", field="number", expression="record.qty > 3 ? 'big' : 'small'", priority=1
    )
    await add_rule(app, "expression", expression="record.qty < 0", message="negative")
    order = (await app.ok("POST", "order", {"qty": 3, "unit_price": "2.50"}, 201))["data"]
    assert order["total"] == "7.50" and order["number"] == "small"
    # A partial update still computes from the whole record (C7).
    order = (await app.ok("PUT", f"order/{order['id']}", {"qty": 4}))["data"]
    assert order["total"] == "10.00" and order["number"] == "big"
    # A failing rule stops the computed ones: nothing is written.
    _status, payload = await app.call("PUT", f"order/{order['id']}", {"qty": -1})
    assert details(payload) == [{"message": "negative", "rule": "expression"}]
    stored = (await app.ok("GET", f"order/{order['id']}"))["data"]
    assert stored["qty"] == 4 and stored["total"] == "10.00"


async def test_computed_value_of_the_wrong_type_is_reported(client: Any) -> None:
    app = await shop(client)
    await add_rule(app, "computed", field="qty", expression="'many'")
    _status, payload = await app.call("POST", "order", {})
    assert details(payload) == [
        {"message": "computed value of qty must be an integer", "field": "qty", "rule": "computed"}
    ]


async def test_related_load_feeds_sum_with_one_query_per_load(client: Any) -> None:
    app = await shop(client)
    await add_rule(
        app,
        "expression",
        expression="sum(related.lines, 'qty') > 10",
        message="at most 10 goods",
        related_load=[{"relation": "lines", "filter": {"kind": "goods"}}],
    )
    order = (
        await app.ok(
            "POST",
            "order",
            {
                "number": "A-1",
                "lines": {"data": [{"qty": 6, "kind": "goods"}, {"qty": 6, "kind": "service"}]},
            },
            201,
        )
    )["data"]
    await app.ok("PUT", f"order/{order['id']}", {"number": "A-2"})
    await app.ok("POST", "line", {"order_id": order["id"], "qty": 5, "kind": "goods"}, 201)
    _status, payload = await app.call("PUT", f"order/{order['id']}", {"number": "A-3"})
    assert details(payload) == [{"message": "at most 10 goods", "rule": "expression"}]


async def test_after_write_rule_violation_rolls_everything_back(client: Any, pg_dsn: str) -> None:
    app = await shop(client)
    await add_rule(
        app,
        "expression",
        hook="after_write",
        expression="sum(related.lines, 'qty') > 10",
        message="too many items",
        related_load=[{"relation": "lines"}],
    )
    status, payload = await app.call(
        "POST", "order", {"number": "big", "lines": {"data": [{"qty": 6}, {"qty": 6}]}}
    )
    assert status == 422
    assert details(payload) == [{"message": "too many items", "rule": "expression"}]
    assert count_rows(pg_dsn, app, "orders") == 0
    assert count_rows(pg_dsn, app, "lines") == 0
    order = (await app.ok("POST", "order", {"number": "ok", "lines": {"data": [{"qty": 6}]}}, 201))[
        "data"
    ]
    assert count_rows(pg_dsn, app, "lines") == 1
    status, _ = await app.call(
        "PUT", f"order/{order['id']}", {"lines": {"_write_mode": "append", "data": [{"qty": 5}]}}
    )
    assert status == 422
    assert count_rows(pg_dsn, app, "lines") == 1


async def test_after_write_rules_see_the_stored_record(client: Any) -> None:
    app = await shop(client)
    await add_rule(
        app,
        "expression",
        hook="after_write",
        expression="record.created_at != nil && record.total == nil",
        message="total missing",
    )
    _status, payload = await app.call("POST", "order", {"number": "x"})
    assert details(payload) == [{"message": "total missing", "rule": "expression"}]
    await app.ok("POST", "order", {"number": "x", "total": "1.00"}, 201)


async def test_before_delete_rules_block_the_delete(client: Any) -> None:
    app = await shop(client)
    await add_rule(
        app,
        "expression",
        hook="before_delete",
        expression="action == 'delete' && record.status == 'paid' && old.status == 'paid'",
        message="Paid orders cannot be deleted",
    )
    await add_rule(
        app,
        "field",
        hook="before_delete",
        field="number",
        operator="min_length",
        value=2,
        message="short numbers are kept",
    )
    paid = (await app.ok("POST", "order", {"number": "P-1", "status": "paid"}, 201))["data"]
    status, payload = await app.call("DELETE", f"order/{paid['id']}")
    assert status == 422
    assert details(payload) == [{"message": "Paid orders cannot be deleted", "rule": "expression"}]
    await app.ok("GET", f"order/{paid['id']}")
    short = (await app.ok("POST", "order", {"number": "S"}, 201))["data"]
    status, payload = await app.call("DELETE", f"order/{short['id']}")
    assert details(payload) == [
        {"message": "short numbers are kept", "field": "number", "rule": "min_length"}
    ]
    fine = (await app.ok("POST", "order", {"number": "N-1", "status": "new"}, 201))["data"]
    await app.ok("DELETE", f"order/{fine['id']}")


async def test_rules_of_a_deleted_entity_go_with_it(client: Any) -> None:
    app = await shop(client)
    await add_rule(app, "expression", entity="line", expression="true")
    await app.ok("DELETE", "_admin/relations/order_lines")
    await app.ok("DELETE", "_admin/entities/line")
    assert (await app.ok("GET", "_admin/rules"))["data"] == []


# --------------------------------------------------------------------------------- docs/rules.md


async def test_docs_page_example(client: Any) -> None:
    app = await new_app(client)
    await app.load_schema(example_schema("invoicing"))

    async def rule(body: dict[str, Any]) -> None:
        await app.ok("POST", "_admin/rules", body, 201)

    await rule(
        {
            "entity": "invoice",
            "hook": "before_write",
            "type": "field",
            "definition": {
                "field": "number",
                "operator": "pattern",
                "value": "^INV-[0-9]+$",
                "message": "Invoice numbers look like INV-123",
            },
        }
    )
    await rule(
        {
            "entity": "item",
            "hook": "before_write",
            "type": "field",
            "definition": {"field": "qty", "operator": "max", "value": 1000},
        }
    )
    await rule(
        {
            "entity": "invoice",
            "hook": "before_write",
            "type": "expression",
            "priority": 10,
            "definition": {
                "expression": "record.status == 'paid' && record.issued_on == nil",
                "message": "An invoice must be issued before it is paid",
            },
        }
    )
    await rule(
        {
            "entity": "invoice",
            "hook": "before_write",
            "type": "computed",
            "definition": {
                "field": "total",
                "expression": "sum(related.items, 'qty * unit_price')",
                "related_load": [{"relation": "items"}],
            },
        }
    )
    await rule(
        {
            "entity": "invoice",
            "hook": "after_write",
            "type": "expression",
            "definition": {
                "expression": "sum(related.items, 'qty * unit_price') > 10000",
                "message": "Split invoices above 10000",
                "related_load": [{"relation": "items"}],
            },
        }
    )
    await rule(
        {
            "entity": "invoice",
            "hook": "before_delete",
            "type": "expression",
            "definition": {
                "expression": "record.status == 'paid'",
                "message": "Paid invoices are kept",
            },
        }
    )

    status, payload = await app.call("POST", "invoice", {"number": "A-1", "status": "paid"})
    assert status == 422
    assert payload["error"] == {
        "code": "VALIDATION_FAILED",
        "message": "Validation failed",
        "details": [
            {"message": "Invoice numbers look like INV-123", "field": "number", "rule": "pattern"},
            {"message": "An invoice must be issued before it is paid", "rule": "expression"},
        ],
    }
    item = {"description": "Desk", "qty": 2, "unit_price": "150.00"}
    invoice = (
        await app.ok("POST", "invoice", {"number": "INV-1", "items": {"data": [item]}}, 201)
    )["data"]
    assert invoice["total"] == "0.00"  # the items are not stored yet when the rule runs
    invoice = (await app.ok("PUT", f"invoice/{invoice['id']}", {"status": "sent"}))["data"]
    assert invoice["total"] == "300.00"
    big = {"description": "Car", "qty": 1, "unit_price": "20000.00"}
    status, payload = await app.call(
        "PUT", f"invoice/{invoice['id']}", {"items": {"_write_mode": "append", "data": [big]}}
    )
    assert details(payload) == [{"message": "Split invoices above 10000", "rule": "expression"}]
    paid = {"status": "paid", "issued_on": "2026-03-01"}
    await app.ok("PUT", f"invoice/{invoice['id']}", paid)
    status, payload = await app.call("DELETE", f"invoice/{invoice['id']}")
    assert details(payload) == [{"message": "Paid invoices are kept", "rule": "expression"}]


async def test_numeric_operator_values_sent_as_text_are_stored_as_numbers(
    client: Any, pg_dsn: str
) -> None:
    """Existing Rocket admin clients send `"value": "0"`: accepted, stored and enforced as the
    number (was a 422); text that is not a plain number is still refused."""
    app = await shop(client)
    for operator, value, number in (("min", "1", 1), ("max", "2.5", 2.5)):
        rule_id = await add_rule(app, "field", field="qty", operator=operator, value=value)
        stored = (await app.ok("GET", f"_admin/rules/{rule_id}"))["data"]
        assert stored["definition"]["value"] == number
        assert type(stored["definition"]["value"]) is type(number)
    rule_id = await add_rule(app, "field", field="code", operator="max_length", value="3")
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        row = conn.execute("select definition from _rules where id = %s", (rule_id,)).fetchone()
    assert row is not None and row[0]["value"] == 3
    status, payload = await app.call("POST", "order", {"qty": 0})
    assert status == 422 and details(payload)[0]["rule"] == "min"
    status, payload = await app.call("POST", "order", {"qty": 1, "code": "ABCD"})
    assert status == 422 and details(payload)[0]["rule"] == "max_length"
    await app.ok("POST", "order", {"qty": 2, "code": "ABC"}, 201)
    for operator, value in (("min", "ten"), ("min", " 1"), ("min_length", "-1"), ("max", "1e3")):
        body = {"entity": "order", "hook": "before_write", "type": "field",
                "definition": {"field": "qty", "operator": operator, "value": value}}  # fmt: skip
        status, payload = await app.call("POST", "_admin/rules", body)
        assert status == 422, (operator, value, payload)
