"""An update whose BEFORE_WRITE stages take the stored row on demand locks its row in the UPDATE
itself (`build_locking_update`): one statement fewer, and the same answers as the lock-first path
— the stored row the later stages see, 404s, soft-deleted rows, and a row locked by someone else,
on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from psycopg import sql

from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.events import trace_rows

DOC = {
    "name": "doc",
    "table": "docs",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "soft_delete": True,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string", "required": True},
        {"name": "pages", "type": "int"},
    ],
}
# An after_write rule (violated when true) reads `old`, the stored row: the locking UPDATE's.
FROZEN = {
    "entity": "doc",
    "hook": "after_write",
    "type": "expression",
    "definition": {"expression": "old.title == 'frozen'", "message": "frozen docs stay"},
}


async def docs(client: Any) -> AppClient:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", DOC, 201)
    await app.ok("POST", "_admin/rules", FROZEN, 201)
    return app


def _statements(rows: list[dict[str, Any]]) -> list[str]:
    return [row["metadata"]["sql"] for row in rows if "sql" in row["metadata"]]


async def test_the_update_locks_its_row_itself(client: Any) -> None:
    app = await docs(client)
    doc = (await app.ok("POST", "doc", {"title": "a", "pages": 1}, 201))["data"]
    trace_id = str(uuid.uuid4())
    resp = await client.put(
        app.url(f"doc/{doc['id']}"),
        json={"pages": 2},
        headers={**app.headers, "X-Trace-ID": trace_id},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"] | {"updated_at": None} == doc | {
        "pages": 2,
        "updated_at": None,
    }
    rows = await trace_rows(app, trace_id, at_least=6)
    statements = _statements(rows)
    assert not [s for s in statements if "FOR UPDATE" in s and s.startswith("SELECT")]
    (update,) = [s for s in statements if s.startswith("UPDATE")]
    assert "FOR UPDATE" in update and '"_stored"' in update


async def test_later_stages_see_the_row_as_it_was(client: Any, pg_dsn: str) -> None:
    app = await docs(client)
    doc = (await app.ok("POST", "doc", {"title": "frozen", "pages": 1}, 201))["data"]
    status, body = await app.call("PUT", f"doc/{doc['id']}", {"title": "thawed"})
    assert status == 422, body
    assert body["error"]["details"][0]["message"] == "frozen docs stay"
    # rolled back: the stored row is unchanged
    assert (await app.ok("GET", f"doc/{doc['id']}"))["data"]["title"] == "frozen"
    other = (await app.ok("POST", "doc", {"title": "b", "pages": 1}, 201))["data"]
    await app.ok("PUT", f"doc/{other['id']}", {"title": "frozen"})  # old.title was "b"


async def test_missing_malformed_and_deleted_rows_are_404(client: Any) -> None:
    app = await docs(client)
    doc = (await app.ok("POST", "doc", {"title": "a"}, 201))["data"]
    await app.ok("DELETE", f"doc/{doc['id']}")
    missing = str(uuid.uuid4())
    for raw in (missing, doc["id"], "not-a-uuid"):
        status, body = await app.call("PUT", f"doc/{raw}", {"pages": 3})
        assert status == 404, (raw, body)
        assert body["error"]["code"] == "NOT_FOUND"
        assert raw in body["error"]["message"]


async def test_a_row_locked_by_another_transaction_is_waited_for(client: Any, pg_dsn: str) -> None:
    app = await docs(client)
    doc = (await app.ok("POST", "doc", {"title": "a", "pages": 1}, 201))["data"]
    async with await psycopg.AsyncConnection.connect(
        dsn_for(pg_dsn, f"rocket_{app.name}")
    ) as other:
        select = sql.SQL("select 1 from docs where id = %s for update")
        await other.execute(select, (doc["id"],))
        update = asyncio.create_task(app.call("PUT", f"doc/{doc['id']}", {"pages": 5}))
        await asyncio.sleep(0.5)
        assert not update.done()  # waiting for the other transaction's lock
        # the other transaction freezes the doc and commits: the waiting update sees that
        # version as the stored row, so the after_write rule refuses it
        await other.execute("update docs set title = 'frozen' where id = %s", (doc["id"],))
        await other.commit()
        status, body = await asyncio.wait_for(update, 10)
    assert status == 422, body
    got = (await app.ok("GET", f"doc/{doc['id']}"))["data"]
    assert (got["title"], got["pages"]) == ("frozen", 1)


async def test_an_update_setting_nothing_still_answers_404_and_200(client: Any) -> None:
    app = await docs(client)
    doc = (await app.ok("POST", "doc", {"title": "a"}, 201))["data"]
    got = (await app.ok("PUT", f"doc/{doc['id']}", {}))["data"]
    assert got["title"] == "a"
    status, body = await app.call("PUT", f"doc/{uuid.uuid4()}", {})
    assert status == 404, body
