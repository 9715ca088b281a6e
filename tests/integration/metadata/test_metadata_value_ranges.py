"""Numbers in metadata, over HTTP on a real PostgreSQL: values out of their field type's range are a
422 when saved or imported, and what is already stored, however large (jsonb gives a `1e308` back
as a 309-digit integer), never turns the admin screens, the export or a record into a 500."""

from __future__ import annotations

import copy
import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.support.apps import AppClient, import_doc, new_app
from tests.support.databases import dsn_for
from tests.support.schemas import LEAVE, LEAVE_FLOW

PK = {"field": "id", "type": "uuid", "generated": True}
MEASURE = {
    "name": "measure",
    "table": "measures",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "ceiling", "type": "float", "default": 1e308},
        {"name": "extra", "type": "json", "default": {"scale": 1e20}},
        {"name": "qty", "type": "int"},
    ],
}
INT_RANGE = "must be between -2147483648 and 2147483647"


def problems(status: int, body: Any) -> list[dict[str, str]]:
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_FAILED", body
    return list(body["error"]["details"])


def stored_field(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in definition["fields"] if f["name"] == name)


async def test_a_float_default_of_1e308_keeps_the_admin_screens_and_export_working(
    client: Any,
) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", MEASURE, 201)
    listed = (await app.ok("GET", "_admin/entities"))["data"]
    shown = (await app.ok("GET", "_admin/entities/measure"))["data"]
    exported = (await app.ok("GET", "_admin/export"))["data"]
    for definition in (listed[0]["definition"], shown["definition"], exported["entities"][0]):
        assert stored_field(definition, "ceiling")["default"] == 10**308  # exact, as stored
        assert stored_field(definition, "extra")["default"] == {"scale": 10**20}
    # The export imports again as it is.
    other = await new_app(client)
    status, body = await import_doc(other, {**exported, "rules": [], "ui_configs": []})
    assert status == 200, body


async def test_a_record_with_a_large_json_number_is_answered(client: Any) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", MEASURE, 201)
    created = (await app.ok("POST", "measure", {"extra": {"scale": 1e20}}, 201))["data"]
    assert created["extra"] == {"scale": 10**20}
    assert created["ceiling"] == 1e308
    fetched = (await app.ok("GET", f"measure/{created['id']}"))["data"]
    assert fetched["extra"] == {"scale": 10**20}


async def test_rows_stored_with_out_of_range_numbers_do_not_break_the_readers(
    client: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", MEASURE, 201)
    legacy = copy.deepcopy(MEASURE) | {"name": "legacy", "table": "legacies"}
    stored_field(legacy, "ceiling")["default"] = 10**400  # no double holds it
    rule = {"field": "qty", "operator": "min", "value": 10**30}
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        conn.execute(
            "insert into _entities (name, table_name, definition) values (%s, %s, %s)",
            ("legacy", "legacies", Jsonb(legacy)),
        )
        conn.execute(
            "insert into _rules (entity, hook, type, definition) values (%s, %s, %s, %s)",
            ("measure", "before_write", "field", Jsonb(rule)),
        )
    listed = (await app.ok("GET", "_admin/entities"))["data"]
    assert [row["name"] for row in listed] == ["legacy", "measure"]
    shown = (await app.ok("GET", "_admin/entities/legacy"))["data"]
    assert stored_field(shown["definition"], "ceiling")["default"] == 10**400
    exported = (await app.ok("GET", "_admin/export"))["data"]
    assert exported["rules"][0]["definition"] == rule
    assert (await app.ok("GET", "_admin/rules"))["data"][0]["definition"] == rule
    # Such a number cannot even travel in a request body: importing the export back is a 400.
    other = await new_app(client)
    status, body = await import_doc(other, {"version": 1, "entities": exported["entities"]})
    assert (status, body["error"]["code"]) == (400, "INVALID_PAYLOAD")


async def test_rule_numbers_outside_the_fields_range_are_a_422(client: Any) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", MEASURE, 201)

    async def save(definition: dict[str, Any], **extra: Any) -> tuple[int, Any]:
        body = {"entity": "measure", "hook": "before_write", "type": "field"}
        return await app.call("POST", "_admin/rules", {**body, **extra, "definition": definition})

    for operator, value in (("min", 1e20), ("max", -1e20)):
        status, body = await save({"field": "qty", "operator": operator, "value": value})
        assert problems(status, body) == [
            {
                "message": f"{operator} {value} is out of range for measure.qty (int): {INT_RANGE}",
                "field": "definition.value",
            }
        ]
    status, body = await save({"field": "qty", "operator": "enum", "value": [1, 1e20]})
    assert problems(status, body)[0]["field"] == "definition.value[1]"
    status, body = await save({"field": "qty", "operator": "required"}, priority=10**12)
    assert problems(status, body) == [{"message": f"priority {INT_RANGE}", "field": "priority"}]
    # In range: saved, and a float bound as large as a double goes.
    await app.ok(
        "POST",
        "_admin/rules",
        {
            "entity": "measure",
            "hook": "before_write",
            "type": "field",
            "definition": {"field": "ceiling", "operator": "max", "value": 1e308},
        },
        201,
    )
    assert len((await app.ok("GET", "_admin/rules"))["data"]) == 1


async def test_an_import_with_an_out_of_range_rule_is_refused_whole(client: Any) -> None:
    app = await new_app(client)
    document = {
        "version": 1,
        "entities": [MEASURE],
        "rules": [
            {
                "entity": "measure",
                "hook": "before_write",
                "type": "field",
                "definition": {"field": "qty", "operator": "max", "value": 1e20},
            }
        ],
    }
    status, body = await import_doc(app, json.dumps(document))
    (detail,) = problems(status, body)
    assert detail["field"] == "rules[0].definition.value"
    assert detail["message"].endswith(
        f"max 1e+20 is out of range for measure.qty (int): {INT_RANGE}"
    )
    assert (await app.ok("GET", "_admin/entities"))["data"] == []


async def test_a_workflow_timeout_beyond_ten_years_is_a_422(client: Any) -> None:
    app: AppClient = await new_app(client)
    await app.ok("POST", "_admin/entities", LEAVE, 201)
    for timeout in ("99999999999d", "999999999d", "3651d"):
        flow = copy.deepcopy(LEAVE_FLOW)
        flow["steps"][1]["timeout"] = timeout
        status, body = await app.call("POST", "_admin/workflows", flow)
        (detail,) = problems(status, body)
        assert f"invalid timeout: {timeout}" in detail["message"]
        assert "at most 3650d" in detail["message"]
    flow = copy.deepcopy(LEAVE_FLOW)
    flow["steps"][1]["timeout"] = "3650d"
    await app.ok("POST", "_admin/workflows", flow, 201)


# --------------------------------------------------------------------- PostgreSQL's 1,600 columns


def wide(count: int, prefix: str = "f", **extra: Any) -> dict[str, Any]:
    """An entity whose table has `count` columns: the key and count - 1 int fields."""
    fields = [{"name": "id", "type": "uuid"}]
    fields += [{"name": f"{prefix}{n}", "type": "int"} for n in range(count - 1)]
    return {"name": "wide", "table": "wides", "primary_key": PK, "fields": fields, **extra}


async def test_an_entity_with_more_columns_than_postgresql_allows_is_a_422(client: Any) -> None:
    app = await new_app(client)
    for body in (wide(1601), wide(1600, soft_delete=True)):
        status, answer = await app.call("POST", "_admin/entities", body)
        (detail,) = problems(status, answer)
        assert detail["field"] == "fields"
        assert "the table would have 1601 columns" in detail["message"]
    assert (await app.ok("GET", "_admin/entities"))["data"] == []
    await app.ok("POST", "_admin/entities", wide(1600), 201)


async def test_an_update_past_1600_columns_is_a_422_and_changes_nothing(client: Any) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", wide(900), 201)
    # Removed fields keep their columns: 900 of them plus 800 new ones would be 1,700.
    status, answer = await app.call("PUT", "_admin/entities/wide", wide(801, prefix="g"))
    (detail,) = problems(status, answer)
    assert detail["message"] == (
        "table wides would have 1700 columns: it has 900 (the columns of removed fields are"
        " kept) and the entity adds 800; PostgreSQL allows at most 1600"
    )
    assert detail["field"] == "fields"
    shown = (await app.ok("GET", "_admin/entities/wide"))["data"]
    assert len(shown["definition"]["fields"]) == 900


async def test_the_slots_of_columns_dropped_outside_rocketd_count_too(
    client: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", wide(2), 201)
    names = [f"x{n}" for n in range(1598)]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True) as conn:
        # PostgreSQL never reuses the place of a dropped column: the table is full.
        conn.execute("alter table wides " + ", ".join(f"add column {n} int" for n in names))
        conn.execute("alter table wides " + ", ".join(f"drop column {n}" for n in names))
    status, answer = await app.call("PUT", "_admin/entities/wide", wide(3))
    (detail,) = problems(status, answer)
    assert detail["message"] == "f1: tables can have at most 1600 columns"
    assert detail["field"] == "f1"
