"""Schema export/import over HTTP: round trips, idempotency, the all-or-nothing rejection of bad
documents, sample data, and the example schemas (ours and upstream's)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.support.apps import AppClient, example_schema, import_doc, new_app
from tests.support.upstream import NAMES, example, upstream_examples


async def counts(app: AppClient) -> dict[str, int]:
    out = {}
    for kind, path in (
        ("entities", "_admin/entities"),
        ("relations", "_admin/relations"),
        ("rules", "_admin/rules"),
        ("state_machines", "_admin/state-machines"),
        ("permissions", "_admin/permissions"),
        ("ui_configs", "_admin/ui-configs"),
    ):
        out[kind] = len((await app.ok("GET", path))["data"])
    return out


@upstream_examples
@pytest.mark.parametrize("name", NAMES)
async def test_upstream_examples_import_cleanly(client: Any, name: str) -> None:
    doc = example(name)
    app = await new_app(client)
    status, body = await import_doc(app, doc)
    assert status == 200, body
    report = body["data"]
    assert "errors" not in report, report
    summary = report["summary"]
    for kind in ("entities", "relations", "rules", "state_machines", "workflows", "webhooks"):
        assert summary[kind] == len(doc.get(kind, [])), (kind, report)
    pairs = {(p["entity"], p["action"]) for p in doc.get("permissions", [])}
    assert summary["permissions"] == len(pairs)  # one policy per pair (spec QUIRK)
    assert summary["records"] > 0
    # Sample data landed and is readable through the data API.
    first = doc["entities"][0]["name"]
    if doc["sample_data"].get(first):
        listing = await app.ok("GET", first)
        assert listing["meta"]["total"] >= 1

    # Re-importing is safe: everything skipped, nothing new.
    before = await counts(app)
    status, again = await import_doc(app, doc)
    assert status == 200, again
    assert again["data"]["summary"]["entities"] == 0
    assert again["data"]["summary"]["rules"] == 0
    assert await counts(app) == before

    # Export, then import into a fresh app: the same metadata.
    exported = (await app.ok("GET", "_admin/export"))["data"]
    assert exported["version"] == 1 and "sample_data" not in exported
    fresh = await new_app(client)
    status, body = await import_doc(fresh, exported)
    assert status == 200, body
    again_exported = (await fresh.ok("GET", "_admin/export"))["data"]
    for key in ("entities", "relations", "rules", "state_machines", "permissions", "workflows",
                "webhooks", "ui_configs"):  # fmt: skip
        assert again_exported[key] == exported[key], key


async def test_bad_documents_are_rejected_whole(client: Any) -> None:
    app = await new_app(client)
    status, body = await import_doc(app, b"{not json")
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
    status, body = await import_doc(app, b"[1, 2]")
    assert status == 400
    status, body = await import_doc(app, {"version": 2})
    assert status == 422 and body["error"]["message"] == "Unsupported schema version: 2"

    good = example_schema("invoicing")
    # A relation naming an entity that neither exists nor is in the file.
    bad_relation = {
        **good,
        "relations": [
            *good["relations"],
            {"name": "ghosts", "type": "one_to_many", "source": "customer", "target": "ghost",
             "source_key": "id", "target_key": "customer_id"},
        ],
    }  # fmt: skip
    status, body = await import_doc(app, bad_relation)
    assert status == 422, body
    messages = [d["message"] for d in body["error"]["details"]]
    assert any("ghost" in m for m in messages), messages
    assert (await counts(app))["entities"] == 0  # nothing applied

    # A rule whose expression does not compile.
    bad_rule = {
        **good,
        "rules": [{"entity": "invoice", "hook": "before_write", "type": "expression",
                   "definition": {"expression": "record.total +* (", "message": "m"}}],
    }  # fmt: skip
    status, body = await import_doc(app, bad_rule)
    assert status == 422, body
    assert body["error"]["details"][0]["field"].startswith("rules[0]")
    assert await counts(app) == {k: 0 for k in await counts(app)}

    # A rule on an entity that exists nowhere.
    status, body = await import_doc(
        app, {"version": 1, "rules": [{"entity": "nope", "type": "field",
                                       "definition": {"field": "x", "operator": "required"}}]}
    )  # fmt: skip
    assert status == 422
    # A sample row the database refuses rolls back the metadata too.
    status, body = await import_doc(
        app, {**good, "sample_data": {"customer": [{"id": "not-a-uuid", "name": "x"}]}}
    )
    assert status == 422, body
    assert "sample_data.customer[0]" in body["error"]["details"][0]["field"]
    assert (await counts(app))["entities"] == 0


async def test_sample_data_and_report(client: Any) -> None:
    app = await new_app(client)
    doc = example_schema("invoicing")
    customer_id = "7f1c6f70-4bb4-4a3b-9a55-8f1f5a1c0001"
    doc["sample_data"] = {
        "customer": [
            {"id": customer_id, "name": "Acme", "slug": "acme", "email": "a@acme.test", "bogus": 1}
        ],
        "nobody": [{"x": 1}],
    }
    status, body = await import_doc(app, doc)
    assert status == 200, body
    report = body["data"]
    assert report["summary"]["records"] == 1
    assert any("bogus" in line for line in report["ignored"])
    assert any("nobody" in line for line in report["ignored"])
    got = await app.ok("GET", f"customer/{customer_id}")
    assert got["data"]["name"] == "Acme"
    status, body = await import_doc(app, doc)
    assert status == 200 and body["data"]["summary"]["records"] == 1  # ON CONFLICT DO NOTHING
    assert body["data"]["skipped"]["entities"] == [e["name"] for e in doc["entities"]]
    assert body["data"]["summary"]["entities"] == 0


@pytest.mark.parametrize("name", ["invoicing", "helpdesk"])
async def test_our_examples_import_cleanly(client: Any, name: str) -> None:
    doc = example_schema(name)
    app = await new_app(client)
    status, body = await import_doc(app, doc)
    assert status == 200, body
    report = body["data"]
    assert "errors" not in report and "ignored" not in report, report
    assert report["summary"]["entities"] == len(doc["entities"])
    assert report["summary"]["relations"] == len(doc["relations"])
    status, body = await import_doc(app, doc)
    assert status == 200 and body["data"]["summary"]["entities"] == 0


async def test_helpdesk_example_works(client: Any) -> None:
    app = await new_app(client)
    status, body = await import_doc(app, example_schema("helpdesk"))
    assert status == 200, body
    summary = body["data"]["summary"]
    assert summary == {
        "entities": 4, "relations": 3, "rules": 2, "state_machines": 1, "workflows": 0,
        "permissions": 6, "webhooks": 0, "ui_configs": 3, "records": 9,
    }  # fmt: skip

    tickets = await app.ok("GET", "ticket?include=labels&sort=subject")
    assert [t["subject"] for t in tickets["data"]] == ["Cannot log in", "Invoice PDF is blank"]
    assert [lab["name"] for lab in tickets["data"][0]["labels"]] == ["login"]
    assert tickets["data"][1]["priority"] == 4  # 4.0 in the file: an int column

    # Rules and the state machine run on writes made after the import.
    status, err = await app.call("POST", "ticket", {"subject": "x", "priority": 9})
    assert status == 422, err
    created = (await app.ok("POST", "ticket", {"subject": "Printer on fire"}, 201))["data"]
    assert created["status"] == "open"
    status, err = await app.call("PUT", f"ticket/{created['id']}", {"status": "closed"})
    assert status == 422, err
    moved = await app.ok("PUT", f"ticket/{created['id']}", {"status": "in_progress"})
    assert moved["data"]["status"] == "in_progress"

    # A file field takes an uploaded file's id.
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG\r\n\x1a\n....", filename="shot.png", content_type="image/png")
    resp = await client.post(app.url("_files/upload"), data=form, headers=app.headers)
    file_id = (await resp.json())["data"]["id"]
    updated = await app.ok("PUT", f"ticket/{created['id']}", {"screenshot": file_id})
    assert updated["data"]["screenshot"]["filename"] == "shot.png"

    # UI configs: the default scope through the read routes, all through the admin route.
    configs = (await app.ok("GET", "_ui/configs"))["data"]
    assert [c["entity"] for c in configs] == ["_app", "ticket"]
    one = (await app.ok("GET", "_ui/config/ticket"))["data"]
    assert one["config"]["list"]["columns"][0] == "subject"
    assert (await app.ok("GET", "_ui/config/agent"))["data"] is None
    assert len((await app.ok("GET", "_admin/ui-configs"))["data"]) == 3


async def test_ui_config_admin_crud(client: Any) -> None:
    app = await new_app(client)
    await app.load_schema(example_schema("invoicing"))
    row = (await app.ok("POST", "_admin/ui-configs", {"entity": "invoice"}, 201))["data"]
    assert row["scope"] == "default" and row["config"] == {}
    status, err = await app.call("POST", "_admin/ui-configs", {"entity": "invoice"})
    assert status == 409
    assert err["error"]["message"] == "UI config already exists for entity invoice scope default"
    status, err = await app.call("POST", "_admin/ui-configs", {"entity": "nope"})
    assert status == 422 and err["error"]["message"] == "entity not found: nope"
    status, err = await app.call("POST", "_admin/ui-configs", {"scope": "x"})
    assert status == 422 and err["error"]["message"] == "entity is required"
    assert (await app.ok("POST", "_admin/ui-configs", {"entity": "_app"}, 201))["data"]
    put = await app.ok("PUT", f"_admin/ui-configs/{row['id']}", {"entity": "invoice",
                                                                  "config": {"a": 1}})  # fmt: skip
    assert put["data"]["config"] == {"a": 1}
    assert (await app.ok("GET", f"_admin/ui-configs/{row['id']}"))["data"]["config"] == {"a": 1}
    gone = await app.ok("DELETE", f"_admin/ui-configs/{row['id']}")
    assert gone["data"] == {"id": row["id"], "deleted": True}
    status, _ = await app.call("GET", f"_admin/ui-configs/{row['id']}")
    assert status == 404
    status, _ = await app.call("GET", "_admin/ui-configs/not-a-uuid")
    assert status == 404


async def test_import_warns_about_skipped_and_ignored_items(client: Any) -> None:
    """A successful import that left things out says so in `meta.warnings` (`{"code",
    "message"}`), next to the report's own lists; a clean first import has no warnings."""
    app = await new_app(client)
    doc = example_schema("invoicing")
    status, body = await import_doc(app, doc)
    assert status == 200 and "warnings" not in body.get("meta", {}), body
    doc["sample_data"] = {"nobody": [{"x": 1}]}
    status, body = await import_doc(app, doc)
    assert status == 200, body
    warnings = body["meta"]["warnings"]
    assert all(set(w) == {"code", "message"} for w in warnings)
    skipped = [w["message"] for w in warnings if w["code"] == "IMPORT_SKIPPED"]
    assert f"entities: {len(doc['entities'])} item(s) already existed" in skipped[0]
    ignored = [w["message"] for w in warnings if w["code"] == "IMPORT_IGNORED"]
    assert ignored == body["data"]["ignored"] and any("nobody" in m for m in ignored)


async def test_sample_rows_are_imports_through_the_write_pipeline(client: Any) -> None:
    """Sample rows run the pipeline in IMPORT mode (issue 14): defaults, generated slugs,
    `auto` timestamps and initial states apply, ids given are kept, and the stages that judge
    clients' writes (rules) do not run; a row the planner refuses rejects the import."""
    app = await new_app(client)
    doc = example_schema("invoicing")
    doc["rules"] = [
        {
            "entity": "invoice",
            "hook": "before_write",
            "type": "expression",
            "definition": {"expression": "record.number == 'RULED'", "message": "no"},
        }
    ]
    doc["state_machines"] = [
        {
            "entity": "invoice",
            "field": "status",
            "definition": {"initial": "draft", "transitions": [{"from": "draft", "to": "sent"}]},
        }
    ]
    invoice_id = "5a0c1a47-1111-4c6e-8f55-000000000001"
    doc["sample_data"] = {
        "customer": [{"name": "Acme Cafe"}],
        "invoice": [{"id": invoice_id, "number": "RULED"}],
    }
    status, body = await import_doc(app, doc)
    assert status == 200, body
    (customer,) = (await app.ok("GET", "customer"))["data"]
    assert customer["slug"] == "acme-cafe" and customer["vip"] is False
    assert customer["created_at"] is not None
    invoice = (await app.ok("GET", f"invoice/{invoice_id}"))["data"]
    assert (invoice["number"], invoice["status"], invoice["total"]) == ("RULED", "draft", "0.00")
    # the same invoice from a client is judged by the rule
    status, err = await app.call("POST", "invoice", {"number": "RULED"})
    assert status == 422, err

    other = await new_app(client)
    bad = example_schema("invoicing")
    bad["sample_data"] = {"invoice": [{"number": "X", "status": "lost"}]}
    status, err = await import_doc(other, bad)
    assert status == 422, err
    assert err["error"]["details"][0]["field"] == "sample_data.invoice[0].status"
    assert (await counts(other))["entities"] == 0  # nothing was applied
