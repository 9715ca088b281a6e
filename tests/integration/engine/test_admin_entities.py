"""Entity and relation admin API over HTTP: CRUD, validation, migration in one transaction,
round trips, and the bad input the issue lists."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import structlog

from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import error_of


def note_entity(**over: Any) -> dict[str, Any]:
    entity = {
        "name": "note",
        "table": "notes",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "soft_delete": False,
        "fields": [
            {"name": "id", "type": "uuid"},
            {"name": "title", "type": "string", "required": True},
            {"name": "score", "type": "int"},
        ],
    }
    entity.update(over)
    return entity


@pytest.fixture
async def app(client: Any) -> AppClient:
    return await new_app(client)


def columns(pg_dsn: str, app: AppClient, table: str) -> dict[str, str]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        rows = conn.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'public' and table_name = %s",
            (table,),
        ).fetchall()
    return {r[0]: r[1] for r in rows}


async def test_create_get_list_round_trip(app: AppClient, pg_dsn: str) -> None:
    sent = note_entity()
    body = await app.ok("POST", "_admin/entities", sent, 201)
    stored = body["data"]
    assert stored["name"] == "note" and stored["table"] == "notes"
    row = (await app.ok("GET", "_admin/entities/note"))["data"]
    assert set(row) == {"name", "table_name", "definition", "created_at", "updated_at"}
    assert row["table_name"] == "notes"
    assert row["definition"] == stored  # what the API returns is what was saved
    listed = (await app.ok("GET", "_admin/entities"))["data"]
    assert [e["name"] for e in listed] == ["note"]
    assert columns(pg_dsn, app, "notes") == {"id": "uuid", "title": "text", "score": "integer"}
    # The data API serves it at once.
    assert (await app.ok("GET", "note"))["data"] == []


async def test_duplicate_entity_is_409(app: AppClient) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    status, body = await app.call("POST", "_admin/entities", note_entity(table="notes2"))
    assert status == 409
    assert body["error"] == {"code": "CONFLICT", "message": "Entity already exists: note"}


async def test_invalid_entity_reports_every_problem(app: AppClient) -> None:
    bad = {
        "name": "Bad Name",
        "table": "",
        "primary_key": {"field": "nope"},
        "fields": [{"name": "x", "type": "colour"}],
    }
    status, body = await app.call("POST", "_admin/entities", bad)
    assert status == 422
    message = body["error"]["message"]
    for part in ("table name is required", "primary key field nope not found in fields", "colour"):
        assert part in message, message
    assert len(body["error"]["details"]) >= 4


@pytest.mark.parametrize(
    ("over", "part"),
    [
        ({"name": "auth"}, "reserved"),
        ({"name": "_admin"}, ""),
        ({"table": "_users"}, ""),
        ({"table": "pg_class"}, ""),
        ({"table": "notes;drop table x"}, ""),
    ],
)
async def test_reserved_and_hostile_names_are_422(
    app: AppClient, over: dict[str, Any], part: str
) -> None:
    status, body = await app.call("POST", "_admin/entities", note_entity(**over))
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_FAILED"
    assert part in body["error"]["message"]
    assert (await app.ok("GET", "_admin/entities"))["data"] == []


async def test_table_colliding_with_another_entity_is_422(app: AppClient) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    status, body = await app.call("POST", "_admin/entities", note_entity(name="memo"))
    assert status == 422
    assert "notes" in body["error"]["message"]


async def test_update_adds_columns_and_url_name_wins(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    changed = note_entity(name="ignored")
    changed["fields"].append({"name": "pinned", "type": "boolean", "default": False})
    body = await app.ok("PUT", "_admin/entities/note", changed)
    assert body["data"]["name"] == "note"
    assert columns(pg_dsn, app, "notes")["pinned"] == "boolean"
    await app.ok("POST", "note", {"title": "hi"}, 201)
    rows = (await app.ok("GET", "note"))["data"]
    assert rows[0]["pinned"] is False


async def test_unsafe_type_change_is_refused_and_changes_nothing(
    app: AppClient, pg_dsn: str
) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    await app.ok("POST", "note", {"title": "keep me", "score": 3}, 201)
    changed = note_entity()
    changed["fields"][2] = {"name": "score", "type": "boolean"}
    status, body = await app.call("PUT", "_admin/entities/note", changed)
    assert status == 422
    assert "score" in body["error"]["message"]
    row = (await app.ok("GET", "_admin/entities/note"))["data"]
    assert row["definition"]["fields"][2]["type"] == "int"
    assert columns(pg_dsn, app, "notes")["score"] == "integer"
    assert (await app.ok("GET", "note"))["data"][0]["score"] == 3


async def test_widening_int_to_bigint_keeps_data(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    await app.ok("POST", "note", {"title": "a", "score": 7}, 201)
    changed = note_entity()
    changed["fields"][2] = {"name": "score", "type": "bigint"}
    await app.ok("PUT", "_admin/entities/note", changed)
    assert columns(pg_dsn, app, "notes")["score"] == "bigint"
    assert (await app.ok("GET", "note"))["data"][0]["score"] == 7


async def test_delete_entity_forgets_it_but_keeps_the_table(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    body = await app.ok("DELETE", "_admin/entities/note")
    assert body == {"data": {"name": "note", "deleted": True}}
    status, body = await app.call("GET", "_admin/entities/note")
    assert status == 404
    assert body["error"] == {"code": "NOT_FOUND", "message": "Entity not found: note"}
    status, body = await app.call("GET", "note")
    assert status == 404
    assert body["error"] == {"code": "UNKNOWN_ENTITY", "message": "Unknown entity: note"}
    assert "title" in columns(pg_dsn, app, "notes")


async def test_relations_crud_and_join_table(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    tag = {
        "name": "tag",
        "table": "tags",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [{"name": "id", "type": "uuid"}, {"name": "label", "type": "string"}],
    }
    await app.ok("POST", "_admin/entities", tag, 201)
    rel = {
        "name": "note_tags",
        "type": "many_to_many",
        "source": "note",
        "target": "tag",
        "source_key": "id",
        "join_table": "note_tag_links",
        "source_join_key": "note_id",
        "target_join_key": "tag_id",
    }
    created = (await app.ok("POST", "_admin/relations", rel, 201))["data"]
    assert created["join_table"] == "note_tag_links"
    assert set(columns(pg_dsn, app, "note_tag_links")) == {"note_id", "tag_id"}
    row = (await app.ok("GET", "_admin/relations/note_tags"))["data"]
    assert set(row) == {"name", "source", "target", "definition", "created_at", "updated_at"}
    assert row["definition"] == created
    status, body = await app.call("POST", "_admin/relations", rel)
    assert status == 409
    assert body["error"]["message"] == "Relation already exists: note_tags"
    status, body = await app.call(
        "POST", "_admin/relations", {**rel, "name": "bad", "target": "ghost"}
    )
    assert status == 422
    assert "target entity not found: ghost" in body["error"]["message"]
    status, body = await app.call(
        "POST", "_admin/relations", {**rel, "name": "no_join", "join_table": None}
    )
    assert status == 422
    body = await app.ok("DELETE", "_admin/relations/note_tags")
    assert body == {"data": {"name": "note_tags", "deleted": True}}
    assert (await app.call("GET", "_admin/relations/note_tags"))[0] == 404


async def test_admin_bodies_that_are_not_objects_are_400(app: AppClient) -> None:
    for raw in (b"{oops", b"[1]", b'"x"'):
        resp = await app.client.post(
            app.url("_admin/entities"),
            data=raw,
            headers={**app.headers, "Content-Type": "application/json"},
        )
        assert resp.status == 400
        err = await error_of(resp)
        assert err["code"] == "INVALID_PAYLOAD" and err["message"] == "Invalid JSON body"


async def test_concurrent_creates_with_the_same_table_are_serialised(app: AppClient) -> None:
    results = await asyncio.gather(
        app.call("POST", "_admin/entities", note_entity(name="one")),
        app.call("POST", "_admin/entities", note_entity(name="two")),
    )
    statuses = sorted(s for s, _ in results)
    assert statuses == [201, 422], results
    listed = (await app.ok("GET", "_admin/entities"))["data"]
    assert len(listed) == 1


async def test_renaming_the_table_keeps_the_data(app: AppClient, pg_dsn: str) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    await app.ok("POST", "note", {"title": "survivor"}, 201)
    await app.ok("PUT", "_admin/entities/note", note_entity(table="memos"))
    assert "title" in columns(pg_dsn, app, "memos")
    assert columns(pg_dsn, app, "notes") == {}
    assert [r["title"] for r in (await app.ok("GET", "note"))["data"]] == ["survivor"]


async def test_renaming_onto_another_entitys_table_is_422(app: AppClient) -> None:
    await app.ok("POST", "_admin/entities", note_entity(), 201)
    await app.ok("POST", "_admin/entities", note_entity(name="memo", table="memos"), 201)
    status, body = await app.call("PUT", "_admin/entities/memo", note_entity(table="notes"))
    assert status == 422
    assert "notes" in body["error"]["message"]
    row = (await app.ok("GET", "_admin/entities/memo"))["data"]
    assert row["table_name"] == "memos"


async def test_non_admin_gets_403_on_every_metadata_route(app: AppClient, pg_dsn: str) -> None:
    import bcrypt

    pw_hash = bcrypt.hashpw(b"clerk-password", bcrypt.gensalt(rounds=4)).decode()
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        conn.execute(
            "insert into _users (email, password_hash, roles) values ('c@x.io', %s, '{clerk}')",
            (pw_hash,),
        )
    resp = await app.client.post(
        app.url("auth/login"), json={"email": "c@x.io", "password": "clerk-password"}
    )
    clerk = AppClient(app.client, app.name, (await resp.json())["data"]["access_token"])
    for method, path in (
        ("GET", "_admin/entities"),
        ("POST", "_admin/entities"),
        ("GET", "_admin/entities/x"),
        ("PUT", "_admin/entities/x"),
        ("DELETE", "_admin/entities/x"),
        ("GET", "_admin/relations"),
        ("POST", "_admin/relations"),
        ("DELETE", "_admin/relations/x"),
    ):
        status, body = await clerk.call(method, path, {} if method in ("POST", "PUT") else None)
        assert status == 403, (method, path, body)
        assert body["error"]["message"] == "Admin access required"


async def test_migration_notes_are_answered_and_logged(app: AppClient, pg_dsn: str) -> None:
    """What the migrator did differently from the definition reaches the admin (`meta.migration`)
    and the log, instead of being dropped."""
    created = await app.ok("POST", "_admin/entities", note_entity(), 201)
    assert "meta" not in created  # nothing to say
    await app.ok("POST", "note", {"title": "old row"}, 201)
    changed = note_entity()
    changed["fields"].append({"name": "summary", "type": "string", "required": True})
    with structlog.testing.capture_logs() as logs:
        body = await app.ok("PUT", "_admin/entities/note", changed)
    notes = body["meta"]["migration"]
    assert any("summary" in n and "added as a nullable column" in n for n in notes), notes
    logged = [
        e for e in logs if e.get("event") == "entity migrated differently from its definition"
    ]
    assert logged and logged[0]["notes"] == notes and logged[0]["entity"] == "note"
    assert body["data"]["name"] == "note"
