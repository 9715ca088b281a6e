"""`POST /_admin/rules/test`: a rule evaluated against a supplied record, nothing written."""

from __future__ import annotations

from typing import Any

from tests.support.apps import AppClient, example_schema, new_app

QTY_RULE = {
    "entity": "item",
    "hook": "before_write",
    "type": "expression",
    "definition": {"expression": "record.qty > 10", "message": "At most 10 per item"},
}


async def shop(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema(example_schema("invoicing"))
    return app


async def try_rule(app: AppClient, body: Any) -> tuple[int, Any]:
    return await app.call("POST", "/_admin/rules/test", body)


async def test_expression_rule_passes_and_fails(client: Any) -> None:
    app = await shop(client)
    status, body = await try_rule(app, {"rule": QTY_RULE, "record": {"qty": 3}})
    assert status == 200, body
    assert body["data"] == {"passed": True, "violations": [], "computed": {}}
    status, body = await try_rule(app, {"rule": QTY_RULE, "record": {"qty": 12}})
    assert status == 200, body
    assert body["data"]["passed"] is False
    assert body["data"]["violations"] == [{"message": "At most 10 per item", "rule": "expression"}]
    # Nothing was written.
    assert (await app.ok("GET", "/item"))["meta"]["total"] == 0


async def test_computed_rule_reports_the_value_and_update_sees_old(client: Any) -> None:
    app = await shop(client)
    computed = {
        "entity": "item",
        "hook": "before_write",
        "type": "computed",
        "definition": {"field": "description", "expression": "'qty ' + string(record.qty)"},
    }
    status, body = await try_rule(
        app,
        {"rule": computed, "action": "update", "old": {"qty": 3}, "record": {"unit_price": "2.50"}},
    )
    assert status == 200, body
    assert body["data"]["passed"] is True
    assert body["data"]["computed"] == {"description": "qty 3"}


async def test_field_rule_and_bad_input(client: Any) -> None:
    app = await shop(client)
    field_rule = {
        "entity": "item",
        "hook": "before_write",
        "type": "field",
        "definition": {"field": "description", "operator": "min_length", "value": 3},
    }
    status, body = await try_rule(app, {"rule": field_rule, "record": {"description": "ab"}})
    assert status == 200 and body["data"]["violations"][0]["field"] == "description", body
    # An invalid rule: the admin route's own 422.
    status, body = await try_rule(app, {"rule": {**QTY_RULE, "entity": "nope"}, "record": {}})
    assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED", body
    # A value of the wrong type, an unknown field, an unknown key, a wrong action.
    status, body = await try_rule(app, {"rule": QTY_RULE, "record": {"qty": "many", "colour": 1}})
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {"record.qty", "record.colour"}
    status, body = await try_rule(app, {"rule": QTY_RULE, "extra": 1})
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", body
    status, body = await try_rule(app, {"rule": QTY_RULE, "action": "upsert"})
    assert status == 400, body
    status, body = await app.call("POST", "/_admin/rules/test", "[1]")
    assert status == 400, body


async def test_the_docs_example_on_the_invoicing_schema(client: Any) -> None:
    app = await shop(client)
    rule = {
        "entity": "invoice",
        "hook": "before_write",
        "type": "expression",
        "definition": {
            "expression": "record.status == 'paid' && record.issued_on == nil",
            "message": "An invoice must be issued before it is paid",
        },
    }
    body = await app.ok(
        "POST",
        "/_admin/rules/test",
        {"rule": rule, "record": {"number": "INV-1", "status": "paid"}},
    )
    assert body["data"] == {
        "passed": False,
        "violations": [
            {"message": "An invoice must be issued before it is paid", "rule": "expression"}
        ],
        "computed": {},
    }
