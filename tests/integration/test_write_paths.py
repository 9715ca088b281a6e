"""Which writes skip BEGIN/COMMIT: a plain create or update is one autocommit `INSERT/UPDATE ...
RETURNING`; anything with a stage, a permission condition or check, a slug or nested writes keeps
the transaction. Also: the one-statement path answers exactly like the transactional one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rocketd.engine import records
from tests.apps import AppClient, new_app
from tests.perms import cond, grant, user_client

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


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """The `single_statement` flag of every write transaction the data API opens."""
    seen: list[bool] = []
    real = records._write_transaction

    @asynccontextmanager
    async def spy(pool: Any, entity: Any, *, single_statement: bool = False) -> AsyncIterator[Any]:
        seen.append(single_statement)
        async with real(pool, entity, single_statement=single_statement) as conn:
            yield conn

    monkeypatch.setattr(records, "_write_transaction", spy)
    yield seen


async def notes_app(client: Any) -> AppClient:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", NOTE, 201)
    return app


async def create_and_update(app: AppClient, paths: list[bool]) -> list[bool]:
    """The flags of one create and one update of a note (whatever their answers: both reach
    the write transaction before a stage could refuse them)."""
    paths.clear()
    status, payload = await app.call("POST", "note", {"title": "t", "status": "open"})
    record_id = payload["data"]["id"] if status == 201 else str(uuid.uuid4())
    await app.call("PUT", f"note/{record_id}", {"title": "v"})
    return list(paths)


async def test_plain_writes_are_one_statement_and_answer_like_reads(
    client: Any, paths: list[bool]
) -> None:
    app = await notes_app(client)
    created = (await app.ok("POST", "note", {"title": "a", "amount": "1.5"}, 201))["data"]
    assert paths == [True]
    assert created["status"] == "open" and created["amount"] == "1.50"
    assert created == (await app.ok("GET", f"note/{created['id']}"))["data"]

    paths.clear()
    updated = (await app.ok("PUT", f"note/{created['id']}", {"status": "done"}))["data"]
    assert paths == [True]  # no lock, no re-read: the UPDATE's RETURNING is the answer
    assert updated == (await app.ok("GET", f"note/{created['id']}"))["data"]
    assert updated["status"] == "done" and updated["created_at"] == created["created_at"]
    assert updated["updated_at"] >= created["updated_at"]


async def test_one_statement_errors_are_the_contracts(client: Any, paths: list[bool]) -> None:
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


async def test_an_update_that_sets_nothing_answers_the_stored_record(
    client: Any, paths: list[bool]
) -> None:
    app = await new_app(client)
    plain = {**NOTE, "fields": [f for f in NOTE["fields"] if f["name"] != "updated_at"]}
    await app.ok("POST", "_admin/entities", plain, 201)
    created = (await app.ok("POST", "note", {"title": "a"}, 201))["data"]
    assert (await app.ok("PUT", f"note/{created['id']}", {"id": created["id"]}))["data"] == created
    status, _ = await app.call("PUT", f"note/{uuid.uuid4()}", {})
    assert status == 404


@pytest.mark.parametrize(
    "stage",
    [
        ("rules", {"entity": "note", "hook": "before_write", "type": "field",
                   "definition": {"field": "title", "operator": "min_length", "value": 1}}),
        ("rules", {"entity": "note", "hook": "after_write", "type": "expression",
                   "definition": {"expression": "record.title != ''", "message": "m"}}),
        ("state-machines", {"entity": "note", "field": "status", "active": True,
                            "definition": {"initial": "open",
                                           "transitions": [{"from": "open", "to": "done"}]}}),
        ("webhooks", {"entity": "note", "hook": "after_write", "url": "http://127.0.0.1:9/h"}),
        ("workflows", {"name": "w", "trigger": {"type": "state_change", "entity": "note",
                                                "field": "status", "to": "done"},
                       "steps": [{"id": "s", "type": "action", "actions": []}]}),
    ],
    ids=["before_write rule", "after_write rule", "state machine", "webhook", "workflow"],
)  # fmt: skip
async def test_every_kind_of_stage_keeps_the_transaction(
    client: Any, paths: list[bool], stage: tuple[str, dict[str, Any]]
) -> None:
    app = await notes_app(client)
    assert await create_and_update(app, paths) == [True, True]
    kind, body = stage
    await app.ok("POST", f"_admin/{kind}", body, 201)
    assert await create_and_update(app, paths) == [False, False]


async def test_permission_conditions_and_checks_keep_the_transaction(
    client: Any, paths: list[bool]
) -> None:
    app = await notes_app(client)
    await grant(app, "note", "read", ["writer", "checked"])
    await grant(app, "note", "create", ["writer"])
    await grant(app, "note", "update", ["writer"])
    writer = await user_client(app, "writer@example.com", ["writer"])
    assert await create_and_update(writer, paths) == [True, True]

    await grant(app, "note", "create", ["checked"], check=[cond("title", "neq", "x")])
    await grant(app, "note", "update", ["checked"], conditions=[cond("status", "eq", "open")])
    checked = await user_client(app, "checked@example.com", ["checked"])
    assert await create_and_update(checked, paths) == [False, False]
    status, _ = await checked.call("POST", "note", {"title": "x"})
    assert status == 403
    assert (await app.ok("GET", "note?filter[title]=x"))["meta"]["total"] == 0


async def test_slugs_and_nested_writes_keep_the_transaction(client: Any, paths: list[bool]) -> None:
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
    paths.clear()
    created = (await app.ok("POST", "note", {"title": "Hello World"}, 201))["data"]
    assert created["code"] == "hello-world"
    nested = (await app.ok("POST", "note", {"title": "n", "lines": {"data": [{}, {}]}}, 201))[
        "data"
    ]
    assert paths == [False, False]
    by_slug = (await app.ok("PUT", "note/hello-world", {"amount": 2}))["data"]
    assert by_slug["id"] == created["id"] and by_slug["amount"] == "2.00"
    assert paths[-1] is False
    lines = (await app.ok("GET", f"note/{nested['id']}?include=lines"))["data"]["lines"]
    assert len(lines) == 2
