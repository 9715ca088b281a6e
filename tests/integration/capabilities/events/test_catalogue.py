"""The span catalogue: each source appears in the trace of the operation that causes it (the
request, auth, permission and engine spans are in test_events_api; webhooks and workflows in
test_events_propagation)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from tests.support.apps import AppClient, new_app
from tests.support.events import trace_rows
from tests.support.perms import user_client

PK = {"field": "id", "type": "uuid", "generated": True}
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string"},
        {"name": "status", "type": "string"},
    ],
}
LINE = {
    "name": "line",
    "table": "note_lines",
    "primary_key": PK,
    "fields": [{"name": "id", "type": "uuid"}, {"name": "note_id", "type": "uuid"}],
}
LINES = {
    "name": "lines",
    "type": "one_to_many",
    "source": "note",
    "target": "line",
    "source_key": "id",
    "target_key": "note_id",
}


async def notes_app(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema({"entities": [NOTE, LINE], "relations": [LINES]})
    return app


async def traced(
    app: AppClient,
    method: str,
    path: str,
    body: Any = None,
    reader: AppClient | None = None,
    **kw: Any,
) -> tuple[int, list[dict[str, Any]]]:
    """Call as `app`, then read the trace back as `reader` (an admin; default `app`)."""
    trace_id = str(uuid.uuid4())
    headers = {**app.headers, "X-Trace-ID": trace_id, **kw.pop("headers", {})}
    resp = await app.client.request(method, app.url(path), json=body, headers=headers, **kw)
    await resp.read()
    rows = await trace_rows(reader or app, trace_id, at_least=2)
    return resp.status, rows


def actions(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["action"]: row for row in rows}


async def test_sql_spans_carry_fingerprints_never_values(client: Any) -> None:
    app = await notes_app(client)
    status, rows = await traced(app, "GET", "note?title=very-secret-value&page=3")
    assert status == 200
    queries = [r for r in rows if r["action"] == "query.execute"]
    assert queries and all((r["source"], r["component"]) == ("db", "postgres") for r in queries)
    for row in queries:
        assert "very-secret-value" not in row["metadata"]["sql"]
        assert isinstance(row["metadata"]["rows"], int) and row["duration_ms"] >= 0
    listed = actions(rows)["record.list"]
    assert all(q["parent_span_id"] == listed["span_id"] for q in queries)
    assert any("notes" in q["metadata"]["sql"] for q in queries)


async def test_record_operations(client: Any) -> None:
    app = await notes_app(client)
    status, rows = await traced(app, "POST", "note", {"title": "a"})
    assert status == 201
    created = actions(rows)["record.create"]
    assert created["entity"] == "note"
    record = (await app.ok("GET", "note"))["data"][0]
    for method, action, body in (
        ("GET", "record.get", None),
        ("PUT", "record.update", {"title": "b"}),
        ("DELETE", "record.delete", None),
    ):
        status, rows = await traced(app, method, f"note/{record['id']}", body)
        assert status == 200, (method, rows)
        span = actions(rows)[action]
        assert (span["entity"], span["record_id"]) == ("note", record["id"])


async def test_nested_writes_plan_and_children(client: Any) -> None:
    app = await notes_app(client)
    status, rows = await traced(app, "POST", "note", {"title": "n", "lines": {"data": [{}, {}]}})
    assert status == 201
    by = actions(rows)
    assert by["nested_write.plan"]["entity"] == "note"
    write = by["nested_write.execute"]
    children = [r for r in rows if r["action"] == "nested_write.child"]
    assert len(children) == 2
    assert all(c["entity"] == "line" and c["metadata"]["operation"] == "insert" for c in children)
    assert all(c["parent_span_id"] == write["span_id"] for c in children)
    assert {c["metadata"]["path"] for c in children} == {"lines[0]", "lines[1]"}
    note = (await app.ok("GET", "note?include=lines"))["data"][0]
    assert {c["record_id"] for c in children} == {line["id"] for line in note["lines"]}


async def test_permission_spans(client: Any) -> None:
    app = await notes_app(client)
    status, rows = await traced(app, "GET", "note")
    assert actions(rows)["permission.check"]["metadata"] == {
        "action": "read",
        "result": "admin_bypass",
    }
    user = await user_client(app, "reader@example.com", ["reader"])
    status, rows = await traced(user, "GET", "note", reader=app)
    assert status == 403
    denied = actions(rows)["permission.denied"]
    assert denied["status"] == "error" and denied["entity"] == "note"
    assert denied["metadata"]["result"] == "denied"
    assert denied["user_id"] is not None


async def test_login_spans(client: Any) -> None:
    app = await new_app(client)
    body = {"email": "admin@localhost", "password": "wrong-password"}
    status, rows = await traced(app, "POST", "auth/login", body)
    assert status == 401
    login = actions(rows)["auth.login"]
    assert (login["source"], login["status"]) == ("auth", "error")
    assert "wrong-password" not in str(rows)


async def test_rules_and_state_machine_spans(client: Any) -> None:
    app = await notes_app(client)
    rule = {
        "entity": "note",
        "hook": "before_write",
        "type": "expression",
        "definition": {
            "expression": "record.title == 'bad'",
            "message": "no",
            "stop_on_fail": True,
        },
    }
    await app.ok("POST", "_admin/rules", rule, 201)
    machine = {
        "entity": "note",
        "field": "status",
        "active": True,
        "definition": {"initial": "draft", "transitions": [{"from": "draft", "to": "done"}]},
    }
    await app.ok("POST", "_admin/state-machines", machine, 201)
    status, rows = await traced(app, "POST", "note", {"title": "ok"})
    assert status == 201
    by = actions(rows)
    assert (by["rules.evaluate"]["component"], by["rules.evaluate"]["entity"]) == ("rules", "note")
    assert by["state.transition"]["component"] == "state_machine"
    status, rows = await traced(app, "POST", "note", {"title": "bad"})
    assert status == 422
    assert actions(rows)["rules.evaluate"]["status"] == "error"


async def test_file_spans(client: Any) -> None:
    app = await new_app(client)
    trace_id = str(uuid.uuid4())
    data = aiohttp.FormData()
    data.add_field("file", b"hello spans", filename="hi.txt", content_type="text/plain")
    resp = await app.client.post(
        app.url("_files/upload"), data=data, headers={**app.headers, "X-Trace-ID": trace_id}
    )
    assert resp.status == 201, await resp.text()
    file_id = (await resp.json())["data"]["id"]
    upload = actions(await trace_rows(app, trace_id, at_least=2))["file.upload"]
    assert upload["metadata"] == {"file_id": file_id, "filename": "hi.txt", "size": 11}
    assert (upload["source"], upload["component"]) == ("storage", "file")
    status, rows = await traced(app, "GET", f"_files/{file_id}")
    assert status == 200 and actions(rows)["file.serve"]["metadata"]["file_id"] == file_id
    status, rows = await traced(app, "DELETE", f"_files/{file_id}")
    assert status == 200 and actions(rows)["file.delete"]["metadata"]["file_id"] == file_id
