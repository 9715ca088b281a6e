"""Nested children run the stages of their own entity (issue 14): rules, state machines and
their errors under the child's path, and what changes for the parent's transaction."""

from __future__ import annotations

from typing import Any

from tests.support.apps import AppClient, new_app

PK = {"field": "id", "type": "uuid", "generated": True}
ORDER = {
    "name": "order",
    "table": "orders",
    "primary_key": PK,
    "fields": [{"name": "id", "type": "uuid"}, {"name": "number", "type": "string"}],
}
LINE = {
    "name": "line",
    "table": "order_lines",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "order_id", "type": "uuid", "required": True},
        {"name": "amount", "type": "int", "required": True},
        {"name": "doubled", "type": "int"},
        {"name": "state", "type": "string", "required": True},
    ],
}
LINES = {
    "name": "order_lines",
    "type": "one_to_many",
    "source": "order",
    "target": "line",
    "source_key": "id",
    "target_key": "order_id",
    "ownership": "source",
    "on_delete": "cascade",
}


async def shop(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema({"entities": [ORDER, LINE], "relations": [LINES]})
    rules = [
        {
            "entity": "line",
            "hook": "before_write",
            "type": "field",
            "definition": {
                "field": "amount",
                "operator": "min",
                "value": 1,
                "message": "too small",
            },
        },
        {
            "entity": "line",
            "hook": "before_write",
            "type": "computed",
            "definition": {"field": "doubled", "expression": "record.amount * 2"},
        },
        {
            "entity": "line",
            "hook": "before_delete",
            "type": "expression",
            "definition": {
                "expression": "record.state != 'shipped'",
                "message": "only shipped lines go",
            },
        },
    ]
    for rule in rules:
        await app.ok("POST", "_admin/rules", rule, 201)
    machine = {
        "entity": "line",
        "field": "state",
        "definition": {
            "initial": "open",
            "transitions": [{"from": "open", "to": "shipped"}],
        },
    }
    await app.ok("POST", "_admin/state-machines", machine, 201)
    return app


def lines(*items: dict[str, Any], mode: str = "diff") -> dict[str, Any]:
    return {"_write_mode": mode, "data": list(items)}


async def test_a_childs_rules_judge_it_and_name_it_by_path(client: Any) -> None:
    app = await shop(client)
    body = {"number": "A-1", "order_lines": lines({"amount": 3}, {"amount": 5}, {"amount": 0})}
    status, payload = await app.call("POST", "order", body)
    assert status == 422, payload
    assert payload["error"]["details"] == [
        {"message": "too small", "field": "order_lines[2].amount", "rule": "min"}
    ]
    assert (await app.ok("GET", "order"))["meta"]["total"] == 0  # nothing was written


async def test_a_childs_computed_rules_and_initial_state_apply(client: Any) -> None:
    app = await shop(client)
    body = {"number": "A-2", "order_lines": lines({"amount": 3}, {"amount": 5})}
    order = (await app.ok("POST", "order", body, 201))["data"]
    got = (await app.ok("GET", f"order/{order['id']}?include=order_lines"))["data"]
    children = sorted(got["order_lines"], key=lambda line: line["amount"])
    assert [(c["amount"], c["doubled"], c["state"]) for c in children] == [
        (3, 6, "open"),
        (5, 10, "open"),
    ]


async def test_a_childs_transitions_are_checked_against_its_stored_row(client: Any) -> None:
    app = await shop(client)
    body = {"number": "A-3", "order_lines": lines({"amount": 3})}
    order = (await app.ok("POST", "order", body, 201))["data"]
    got = (await app.ok("GET", f"order/{order['id']}?include=order_lines"))["data"]
    line_id = got["order_lines"][0]["id"]
    back = {"order_lines": lines({"id": line_id, "state": "shipped"})}
    await app.ok("PUT", f"order/{order['id']}", back)
    status, payload = await app.call(
        "PUT", f"order/{order['id']}", {"order_lines": lines({"id": line_id, "state": "open"})}
    )
    assert status == 422, payload
    (detail,) = payload["error"]["details"]
    assert detail["field"] == "order_lines[0].state"
    assert detail["message"] == "Invalid transition from 'shipped' to 'open'"


async def test_a_childs_before_delete_rules_guard_replace_mode(client: Any) -> None:
    app = await shop(client)
    body = {"number": "A-4", "order_lines": lines({"amount": 3})}
    order = (await app.ok("POST", "order", body, 201))["data"]
    status, payload = await app.call(
        "PUT", f"order/{order['id']}", {"order_lines": lines({"amount": 7}, mode="replace")}
    )
    assert status == 422, payload  # the open line may not be deleted (its rule wants 'shipped')
    assert payload["error"]["details"][0]["message"] == "only shipped lines go"
    got = (await app.ok("GET", f"order/{order['id']}?include=order_lines"))["data"]
    assert [line["amount"] for line in got["order_lines"]] == [3]
