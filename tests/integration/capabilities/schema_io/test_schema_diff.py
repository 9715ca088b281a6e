"""`POST /_admin/diff`: what importing a document would do, checked against what import then does;
nothing written; bad documents refused like an import refuses them (never a 500)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from rocketd.engine.app_settings import AppSettingsSection
from rocketd.http.app import create_app
from rocketd.http.keys import APP_SETTINGS_SECTIONS
from tests.support.apps import (
    AppClient,
    diff_doc,
    example_schema,
    import_doc,
    new_app,
    post_document,
)
from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.perms import user_client
from tests.support.schemas import LEAVE, LEAVE_FLOW
from tests.support.upstream import NAMES, example, upstream_examples

GROUPS = ("added", "changed", "unchanged", "only_in_app", "left_out")
KINDS = ("entities", "relations", "rules", "state_machines", "workflows", "permissions",
         "webhooks", "ui_configs")  # fmt: skip


def database_state(pg_dsn: str, app: AppClient) -> dict[str, Any]:
    """Every relation of the app's database, and a fingerprint of every table's rows (but
    `_events`, which the instrumentation of the requests themselves fills)."""
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        relations = conn.execute(
            "select c.relname, c.relkind from pg_class c join pg_namespace n"
            " on n.oid = c.relnamespace where n.nspname = 'public' order by 1"
        ).fetchall()
        state: dict[str, Any] = {"relations": relations}
        for name, kind in relations:
            if kind != "r" or name == "_events":
                continue
            row = conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text),"
                    " '')) from {} t"
                ).format(sql.Identifier(name))
            ).fetchone()
            state[name] = row
        return state


async def indexes_built(app: AppClient, entity: str, count: int) -> None:
    async def ready() -> bool:
        row = (await app.ok("GET", f"_admin/entities/{entity}"))["data"]
        states = [i["state"] for i in row.get("indexes", [])]
        return len(states) == count and all(s == "ready" for s in states)

    await wait_until(ready, "the declared indexes to be built", timeout=20, interval=0.05)


async def diff_of(app: AppClient, doc: Any) -> dict[str, Any]:
    status, body = await diff_doc(app, doc)
    assert status == 200, body
    return dict(body["data"])


def entity(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["entities"] if e["name"] == name)


def field(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in definition["fields"] if f["name"] == name)


def canonical(items: list[Any]) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True) for i in items)


async def test_an_app_against_its_own_export_differs_in_nothing(client: Any, pg_dsn: str) -> None:
    app = await new_app(client)
    status, body = await import_doc(app, example_schema("helpdesk"))
    assert status == 200, body
    await app.ok("POST", "_admin/entities", LEAVE, 201)
    await app.ok("POST", "_admin/workflows", LEAVE_FLOW, 201)
    hook = {"entity": "ticket", "hook": "after_write", "url": "https://hooks.example.com/t"}
    await app.ok("POST", "_admin/webhooks", hook, 201)
    ticket = (await app.ok("GET", "_admin/entities/ticket"))["data"]["definition"]
    field(ticket, "subject")["indexed"] = True
    ticket["indexes"] = [{"fields": ["status", "-priority"], "unique": False}]
    await app.ok("PUT", "_admin/entities/ticket", ticket)
    await indexes_built(app, "ticket", 2)  # the builder writes their states meanwhile
    exported = (await app.ok("GET", "_admin/export"))["data"]
    assert all(exported[kind] for kind in KINDS), exported  # every kind is compared
    before = database_state(pg_dsn, app)

    diff = await diff_of(app, exported)

    total = sum(len(exported[kind]) for kind in KINDS)
    summary = diff["summary"]
    assert {g: summary[g] for g in GROUPS} == {
        "added": 0, "changed": 0, "unchanged": total, "only_in_app": 0, "left_out": 0,
    }  # fmt: skip
    ui_configs = len(exported["ui_configs"])  # upserted by an import, with the same content
    assert summary["import"] == {
        "create": 0, "update": ui_configs, "skip": total - ui_configs, "ignore": 0,
    }  # fmt: skip
    assert summary["records"] == 0 and diff["sample_data"] == []
    for kind in KINDS:
        assert [e["at"] for e in diff[kind]["unchanged"]] == [
            f"{kind}[{i}]" for i in range(len(exported[kind]))
        ]
        assert summary["sections"][kind]["unchanged"] == len(exported[kind])
    assert [e["key"] for e in diff["entities"]["unchanged"]] == [
        "agent", "label", "leave_request", "reply", "ticket",
    ]  # fmt: skip
    assert database_state(pg_dsn, app) == before  # nothing written


async def test_what_the_document_changes_is_listed_and_import_leaves_it(
    client: Any, pg_dsn: str
) -> None:
    """The document changes a field's type, indexes a field, declares an index, drops a relation
    and adds an entity and a UI config: the diff lists exactly those, says import skips the
    entities it cannot change, and import then does exactly what the diff said."""
    app = await new_app(client)
    status, body = await import_doc(app, example_schema("invoicing"))
    assert status == 200, body
    doc = (await app.ok("GET", "_admin/export"))["data"]
    stored = copy.deepcopy(doc)
    field(entity(doc, "invoice"), "total")["type"] = "float"
    field(entity(doc, "customer"), "email")["indexed"] = True
    entity(doc, "invoice")["indexes"] = [{"fields": ["status", "-issued_on"], "unique": False}]
    doc["relations"] = [r for r in doc["relations"] if r["name"] != "invoice_tags"]
    note = {
        "name": "note",
        "table": "notes",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [{"name": "id", "type": "uuid"}, {"name": "body", "type": "text"}],
    }
    doc["entities"].append(note)
    doc["ui_configs"] = [{"entity": "_app", "config": {"title": "Invoicing"}}]
    before = database_state(pg_dsn, app)

    diff = await diff_of(app, doc)

    assert database_state(pg_dsn, app) == before  # nothing written
    entities = diff["entities"]
    assert entities["changed"] == [
        {"key": "customer", "at": "entities[0]", "import": "skip", "changes": [
            {"path": "fields[email].indexed", "old": None, "new": True}]},
        {"key": "invoice", "at": "entities[1]", "import": "skip", "changes": [
            {"path": "fields[total].type", "old": "decimal", "new": "float"},
            {"path": "indexes", "old": None,
             "new": [{"fields": ["status", "-issued_on"], "unique": False}]}]},
    ]  # fmt: skip
    assert entities["added"] == [
        {"key": "note", "at": "entities[4]", "import": "create", "item": {**note,
         "soft_delete": False, "primary_key": {**note["primary_key"]}}},
    ]  # fmt: skip
    assert [e["key"] for e in entities["unchanged"]] == ["item", "tag"]
    assert entities["only_in_app"] == entities["left_out"] == []
    tags = next(r for r in stored["relations"] if r["name"] == "invoice_tags")
    assert diff["relations"]["only_in_app"] == [{"key": "invoice_tags", "item": tags}]
    assert diff["relations"]["added"] == diff["relations"]["changed"] == []
    assert diff["ui_configs"]["added"] == [
        {"key": "_app/default", "at": "ui_configs[0]", "import": "create",
         "item": {"entity": "_app", "scope": "default", "config": {"title": "Invoicing"}}},
    ]  # fmt: skip
    summary = diff["summary"]
    assert {g: summary[g] for g in GROUPS} == {
        "added": 2, "changed": 2, "unchanged": 4, "only_in_app": 1, "left_out": 0,
    }  # fmt: skip
    assert summary["import"] == {"create": 2, "update": 0, "skip": 6, "ignore": 0}

    # Import does what the diff said: the two new items, nothing to the entities it skips.
    status, body = await import_doc(app, doc)
    assert status == 200, body
    created = {k: v for k, v in body["data"]["summary"].items() if v}
    assert created == {"entities": 1, "ui_configs": 1}
    after = (await app.ok("GET", "_admin/export"))["data"]
    assert entity(after, "invoice") == entity(stored, "invoice")
    assert entity(after, "customer") == entity(stored, "customer")
    assert entity(after, "note") == entities["added"][0]["item"]
    again = await diff_of(app, doc)
    assert again["entities"]["changed"] == entities["changed"]
    assert again["entities"]["added"] == again["ui_configs"]["added"] == []


async def test_what_the_app_changed_since_the_export_shows_the_app_s_values(
    client: Any,
) -> None:
    """Indexes declared and a relation deleted in the app after an export: the diff of that
    export shows the app's values as `old`, per index where both sides declare some, and the
    relation as one import would create."""
    app = await new_app(client)
    status, body = await import_doc(app, example_schema("invoicing"))
    assert status == 200, body
    invoice = (await app.ok("GET", "_admin/entities/invoice"))["data"]["definition"]
    invoice["indexes"] = [{"fields": ["status"], "unique": False}]
    await app.ok("PUT", "_admin/entities/invoice", invoice)
    doc = (await app.ok("GET", "_admin/export"))["data"]
    entity(doc, "invoice")["indexes"] = [
        {"fields": ["status"], "unique": True},
        {"fields": ["customer_id", "-issued_on"], "unique": False},
    ]
    field(invoice, "issued_on")["indexed"] = True
    await app.ok("PUT", "_admin/entities/invoice", invoice)
    await app.ok("DELETE", "_admin/relations/invoice_tags")

    diff = await diff_of(app, doc)

    (changed,) = diff["entities"]["changed"]
    assert changed["key"] == "invoice" and changed["import"] == "skip"
    assert changed["changes"] == [
        {"path": "fields[issued_on].indexed", "old": True, "new": None},
        {"path": "indexes[status].unique", "old": False, "new": True},
        {"path": "indexes[customer_id,-issued_on]", "old": None,
         "new": {"fields": ["customer_id", "-issued_on"], "unique": False}},
    ]  # fmt: skip
    (added,) = diff["relations"]["added"]
    assert added["key"] == "invoice_tags" and added["import"] == "create"
    assert added["item"]["join_table"] == "invoice_tag_links"


@upstream_examples
@pytest.mark.parametrize("name", NAMES)
async def test_upstream_examples_on_an_empty_app_are_all_creates_and_what_import_creates(
    client: Any, name: str
) -> None:
    doc = example(name)
    app = await new_app(client)
    diff = await diff_of(app, doc)
    summary = diff["summary"]
    assert summary["changed"] == summary["unchanged"] == summary["only_in_app"] == 0
    assert summary["import"]["update"] == summary["import"]["ignore"] == 0
    # Left out: only the permissions the spec's QUIRK skips (a second policy for a pair).
    for kind in KINDS:
        left_out = diff[kind]["left_out"]
        if kind != "permissions":
            assert left_out == [], (kind, left_out)
        assert {e["reason"] for e in left_out} <= {"earlier in the document"}

    status, body = await import_doc(app, doc)
    assert status == 200, body
    report = body["data"]["summary"]
    exported = (await app.ok("GET", "_admin/export"))["data"]
    for kind in KINDS:
        added = diff[kind]["added"]
        assert all(e["import"] == "create" for e in added)
        assert len(added) == report[kind], kind
        # What import created is, item for item, what the diff said it would create.
        assert canonical([e["item"] for e in added]) == canonical(exported[kind]), kind
    assert summary["records"] == report["records"] > 0
    assert summary["import"]["create"] == sum(report[kind] for kind in KINDS)

    again = await diff_of(app, doc)
    assert again["summary"]["added"] == again["summary"]["only_in_app"] == 0
    # A skipped second policy for a pair differs from the stored first one; import leaves it.
    assert {e["import"] for e in again["permissions"]["changed"]} <= {"skip"}
    assert sum(again["summary"]["sections"]["permissions"][g] for g in GROUPS) == len(
        doc["permissions"]
    )


async def test_sample_data_says_where_rows_go_and_how_many(client: Any) -> None:
    app = await new_app(client)
    doc = example_schema("helpdesk")
    diff = await diff_of(app, {**doc, "sample_data": {
        **doc["sample_data"], "agent": [{"name": "A", "legacy_id": 7}, {"legacy_id": 8}],
        "nobody": [{"x": 1}]}})  # fmt: skip
    by_key = {e["key"]: e for e in diff["sample_data"]}
    assert by_key["agent"] == {
        "key": "agent", "import": "insert", "into": "entity", "rows": 1,
        "unknown_keys": ["legacy_id"],
    }  # fmt: skip
    assert by_key["ticket_labels"]["into"] == "join_table"
    assert by_key["nobody"] == {
        "key": "nobody", "import": "ignore",
        "reason": "not an entity or join table of this document",
    }  # fmt: skip
    assert [e["key"] for e in diff["sample_data"]] == [
        "agent", "ticket", "reply", "label", "ticket_labels", "nobody",
    ]  # fmt: skip
    status, body = await import_doc(app, doc)
    assert status == 200, body
    assert (await diff_of(app, doc))["summary"]["records"] == body["data"]["summary"]["records"]


@dataclass(frozen=True)
class Digest:
    enabled: bool = False
    hour: int = 7


@dataclass(frozen=True)
class Limits:
    per_page: int = 25


async def test_settings_are_compared_by_section(runtime: Any, aiohttp_client: Any) -> None:
    """The kernel declares no settings section yet: two are declared here, as
    tests/integration/engine/test_app_settings.py does."""
    web_app = create_app(runtime.services)
    web_app[APP_SETTINGS_SECTIONS] = (
        AppSettingsSection("digest", Digest()),
        AppSettingsSection("limits", Limits()),
    )
    app = await new_app(await aiohttp_client(web_app))
    await app.ok("PUT", "_admin/settings", {"digest": {"hour": 9}})
    doc = {"version": 1, "settings": {"digest": {"hour": 6}, "limits": {"per_page": 50},
                                      "elsewhere": {"x": 1}}}  # fmt: skip
    settings = (await diff_of(app, doc))["settings"]
    assert settings["changed"] == [
        {"key": "digest", "at": "settings.digest", "import": "skip",
         "changes": [{"path": "hour", "old": 9, "new": 6}]},
    ]  # fmt: skip
    assert settings["added"] == [
        {"key": "limits", "at": "settings.limits", "import": "create", "item": {"per_page": 50}}
    ]
    assert settings["left_out"] == [
        {"key": "elsewhere", "at": "settings.elsewhere", "import": "ignore",
         "reason": "not a settings section of this server"},
    ]  # fmt: skip
    status, body = await diff_doc(app, {"version": 1, "settings": {"limits": {"per_page": "x"}}})
    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "settings.limits.per_page"


# ------------------------------------------------------------------------------------ bad input

DEEP = (
    '{"version": 1, "ui_configs": [{"entity": "_x", "config": '
    + '{"a": ' * 200
    + "1"
    + ("}" * 200)
    + "}]}"
)
BAD_BODIES = [
    pytest.param(b"{not json", 400, "INVALID_PAYLOAD", id="malformed-json"),
    pytest.param(b"", 400, "INVALID_PAYLOAD", id="empty-body"),
    pytest.param(b"[1, 2]", 400, "INVALID_PAYLOAD", id="an-array"),
    pytest.param(b"null", 400, "INVALID_PAYLOAD", id="null"),
    pytest.param(DEEP.encode(), 400, "INVALID_PAYLOAD", id="nested-200-levels"),
    pytest.param({"version": 2}, 422, "VALIDATION_FAILED", id="version-2"),
    pytest.param({"version": "1"}, 422, "VALIDATION_FAILED", id="version-a-string"),
    pytest.param({"entities": []}, 422, "VALIDATION_FAILED", id="no-version"),
    pytest.param({"version": 1, "entities": {}}, 422, "VALIDATION_FAILED", id="entities-object"),
    pytest.param({"version": 1, "entities": [1]}, 422, "VALIDATION_FAILED", id="entity-number"),
    pytest.param({"version": 1, "rules": "x"}, 422, "VALIDATION_FAILED", id="rules-string"),
    pytest.param({"version": 1, "permissions": [[]]}, 422, "VALIDATION_FAILED", id="policy-list"),
    pytest.param({"version": 1, "settings": []}, 422, "VALIDATION_FAILED", id="settings-array"),
    pytest.param({"version": 1, "sample_data": []}, 422, "VALIDATION_FAILED", id="sample-array"),
    pytest.param(
        {**example_schema("invoicing"), "sample_data": {"customer": 5}},
        422,
        "VALIDATION_FAILED",
        id="sample-rows-a-number",
    ),
    pytest.param(
        {**example_schema("invoicing"), "sample_data": {"customer": [[1]]}},
        422,
        "VALIDATION_FAILED",
        id="sample-row-an-array",
    ),
    pytest.param(
        {"version": 1, "ui_configs": [{"entity": "_x", "config": {"a": "b\u0000"}}]},
        422,
        "VALIDATION_FAILED",
        id="nul-character",
    ),
]
HOSTILE_ENTITIES = [
    pytest.param({"name": 'x"; drop table _entities; --', "table": "t"}, id="sql-in-name"),
    pytest.param({"name": "a" * 5000, "table": "t"}, id="long-name"),
    pytest.param({"name": "café", "table": "cafes"}, id="non-ascii-name"),
    pytest.param({"name": "ok", "table": "pg_catalog.pg_class"}, id="qualified-table"),
    pytest.param({"name": "ok", "table": "_users"}, id="system-table"),
    pytest.param(
        {"name": "ok", "table": "t", "fields": [{"name": "a b", "type": "text"}]},
        id="field-name-with-space",
    ),
    pytest.param(
        {"name": "ok", "table": "t", "fields": [{"name": "x", "type": "text);--"}]},
        id="sql-in-type",
    ),
    pytest.param(
        {"name": "ok", "table": "t", "indexes": [{"fields": ["nope; drop"]}]},
        id="sql-in-index",
    ),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_bad_documents_are_refused_as_import_refuses_them(
    client: Any, pg_dsn: str, body: Any, status: int, code: str
) -> None:
    app = await new_app(client)
    before = database_state(pg_dsn, app)
    got, answer = await diff_doc(app, body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"] and isinstance(answer["error"].get("details", []), list)
    imported, refused = await import_doc(app, body)  # the importer's own answer: the same
    assert (imported, refused["error"]["code"]) == (status, code), refused
    assert [d["field"] for d in refused["error"].get("details", []) if "field" in d] == [
        d["field"] for d in answer["error"].get("details", []) if "field" in d
    ]
    assert database_state(pg_dsn, app) == before


@pytest.mark.parametrize("hostile", HOSTILE_ENTITIES)
async def test_hostile_names_are_a_422_naming_the_item(
    client: Any, pg_dsn: str, hostile: dict[str, Any]
) -> None:
    app = await new_app(client)
    before = database_state(pg_dsn, app)
    doc = {"version": 1, "entities": [{"fields": [{"name": "id", "type": "uuid"}], **hostile}]}
    status, body = await diff_doc(app, doc)
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_FAILED"
    assert body["error"]["message"].startswith("Import would reject the document: ")
    assert all(d["field"].startswith("entities[0]") for d in body["error"]["details"])
    assert database_state(pg_dsn, app) == before


async def test_unknown_top_level_keys_are_ignored_as_import_ignores_them(client: Any) -> None:
    app = await new_app(client)
    doc = {"version": 1, "exported_at": "yesterday", "colour": "blue", "extras": [{"x": 1}]}
    diff = await diff_of(app, doc)
    assert all(diff["summary"][g] == 0 for g in GROUPS)
    status, body = await import_doc(app, doc)
    assert status == 200 and not any(body["data"]["summary"].values()), body


async def test_oversize_bodies_are_413(client: Any) -> None:
    app = await new_app(client)
    big = json.dumps({"version": 1, "ui_configs": [{"entity": "_x", "config": "y" * 70_000}]})
    status, body = await diff_doc(app, big)  # declared length above server.max_body_size
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE", body

    async def chunks() -> Any:  # no declared length: stopped while reading
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192].encode()

    resp = await app.client.post(
        app.url("_admin/diff"),
        data=chunks(),
        headers={**app.headers, "Content-Type": "application/json"},
    )
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_only_an_admin_may_ask(client: Any) -> None:
    app = await new_app(client)
    resp = await app.client.post(app.url("_admin/diff"), json={"version": 1})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "UNAUTHORIZED"
    user = await user_client(app, "clerk@example.com", ["clerk"])
    status, body = await post_document(user, "diff", {"version": 1})
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
