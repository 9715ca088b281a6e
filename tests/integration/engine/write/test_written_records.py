"""The record a create or update answers with comes from its INSERT/UPDATE ... RETURNING (a
re-read only after nested writes): it must be exactly what a GET then returns, and the errors of
those statements must be the contract's."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.apps import AppClient, new_app

PK = {"field": "id", "type": "uuid", "generated": True}
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string", "required": True},
        {"name": "code", "type": "string", "unique": True},
        {"name": "status", "type": "string", "enum": ["open", "done"], "default": "open"},
        {"name": "amount", "type": "decimal", "precision": 2},
        {"name": "owner_id", "type": "uuid"},
        {"name": "created_at", "type": "timestamp", "auto": "create"},
        {"name": "updated_at", "type": "timestamp", "auto": "update"},
    ],
}


async def notes_app(client: Any) -> AppClient:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", NOTE, 201)
    return app


async def test_writes_answer_exactly_what_a_read_returns(client: Any) -> None:
    app = await notes_app(client)
    created = (await app.ok("POST", "note", {"title": "a", "amount": "1.5"}, 201))["data"]
    assert created["status"] == "open" and created["amount"] == "1.50"
    assert created == (await app.ok("GET", f"note/{created['id']}"))["data"]

    updated = (await app.ok("PUT", f"note/{created['id']}", {"status": "done"}))["data"]
    assert updated == (await app.ok("GET", f"note/{created['id']}"))["data"]
    assert updated["status"] == "done" and updated["created_at"] == created["created_at"]
    assert updated["updated_at"] >= created["updated_at"]


async def test_write_errors_are_the_contracts(client: Any) -> None:
    app = await notes_app(client)
    first = (await app.ok("POST", "note", {"title": "a", "code": "X"}, 201))["data"]
    status, payload = await app.call("POST", "note", {"title": "b", "code": "X"})
    assert status == 409 and payload["error"]["code"] == "CONFLICT", payload
    assert payload["error"]["details"][0]["field"] == "code"
    second = (await app.ok("POST", "note", {"title": "b", "code": "Y"}, 201))["data"]
    status, payload = await app.call("PUT", f"note/{second['id']}", {"code": "X"})
    assert status == 409 and payload["error"]["details"][0]["field"] == "code", payload

    missing = uuid.uuid4()
    status, payload = await app.call("PUT", f"note/{missing}", {"title": "z"})
    assert status == 404 and payload["error"]["message"] == f"note with id {missing} not found"
    status, payload = await app.call("PUT", "note/not-a-key", {"title": "z"})
    assert status == 404 and payload["error"]["code"] == "NOT_FOUND"
    # Nothing changed by the refused writes.
    assert (await app.ok("GET", f"note/{first['id']}"))["data"]["code"] == "X"
    assert (await app.ok("GET", f"note/{second['id']}"))["data"]["code"] == "Y"
    assert (await app.ok("GET", "note"))["meta"]["total"] == 2


async def test_an_update_that_sets_nothing_answers_the_stored_record(client: Any) -> None:
    app = await new_app(client)
    plain = {**NOTE, "fields": [f for f in NOTE["fields"] if f["name"] != "updated_at"]}
    await app.ok("POST", "_admin/entities", plain, 201)
    created = (await app.ok("POST", "note", {"title": "a"}, 201))["data"]
    assert (await app.ok("PUT", f"note/{created['id']}", {"id": created["id"]}))["data"] == created
    status, _ = await app.call("PUT", f"note/{uuid.uuid4()}", {})
    assert status == 404


async def test_slugged_and_nested_writes_answer_the_whole_record(client: Any) -> None:
    app = await new_app(client)
    slugged = {**NOTE, "slug": {"field": "code", "source": "title"}}
    line = {
        "name": "line",
        "table": "note_lines",
        "primary_key": PK,
        "fields": [{"name": "id", "type": "uuid"}, {"name": "note_id", "type": "uuid"}],
    }
    relation = {
        "name": "lines",
        "type": "one_to_many",
        "source": "note",
        "target": "line",
        "source_key": "id",
        "target_key": "note_id",
    }
    await app.load_schema({"entities": [slugged, line], "relations": [relation]})
    created = (await app.ok("POST", "note", {"title": "Hello World"}, 201))["data"]
    assert created["code"] == "hello-world"
    nested = (await app.ok("POST", "note", {"title": "n", "lines": {"data": [{}, {}]}}, 201))[
        "data"
    ]
    by_slug = (await app.ok("PUT", "note/hello-world", {"amount": 2}))["data"]
    assert by_slug["id"] == created["id"] and by_slug["amount"] == "2.00"
    assert by_slug == (await app.ok("GET", f"note/{created['id']}"))["data"]
    assert nested == (await app.ok("GET", f"note/{nested['id']}"))["data"]
    lines = (await app.ok("GET", f"note/{nested['id']}?include=lines"))["data"]["lines"]
    assert len(lines) == 2
