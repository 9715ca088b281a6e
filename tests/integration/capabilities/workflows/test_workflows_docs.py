"""The purchase-order example of docs/workflows.md, run for real."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg

from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.db_users import user_client
from tests.support.helpers import wait_until
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "workflows.md"


def json_blocks() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    return [json.loads(b) for b in blocks]


async def waiting_at(app: AppClient, step: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def there() -> bool:
        rows = (await app.ok("GET", "_workflows/pending"))["data"]
        found.update(rows[0] if rows else {})
        return bool(rows and rows[0]["current_step"] == step)

    await wait_until(there, f"an instance waiting at {step}", timeout=10)
    return found


async def test_purchase_order_example(client: Any, pg_dsn: str) -> None:
    po_entity, event_entity, workflow, answer = json_blocks()
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", po_entity, 201)
    await app.ok("POST", "_admin/entities", event_entity, 201)
    await app.ok("POST", "_admin/workflows", workflow, 201)
    head, head_id = await user_client(client, pg_dsn, app, "head")
    finance, _ = await user_client(client, pg_dsn, app, "finance")

    # 2400: the department head approves, the order is approved.
    body = {"title": "laptops", "amount": 2400, "approver_id": head_id, "status": "draft"}
    po = (await app.ok("POST", "purchase_order", body, 201))["data"]
    await app.ok("PUT", f"purchase_order/{po['id']}", {"status": "submitted"})
    instance = await waiting_at(head, "head_review")
    assert await finance.ok("GET", "_workflows/pending") == {"data": []}
    done = (
        await head.ok("POST", f"_workflows/{instance['id']}/approve", {"comment": "within budget"})
    )["data"]
    assert set(done) == set(answer["data"])
    assert done["status"] == "completed" and done["current_step"] is None
    assert done["context"] == {"po_id": po["id"], "amount": 2400, "approver": head_id}
    steps = [(h["step"], h["status"]) for h in done["history"]]
    assert steps == [(h["step"], h["status"]) for h in answer["data"]["history"]]
    assert done["history"][1]["by"] == head_id
    assert done["history"][1]["comment"] == "within budget"
    stored = (await app.ok("GET", f"purchase_order/{po['id']}"))["data"]
    assert stored["status"] == "approved" and stored["approved_at"] is not None
    events = (await app.ok("GET", "po_event"))["data"]
    assert [(e["po_id"], e["note"]) for e in events] == [(po["id"], "approved")]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        hooks = conn.execute("select source, url from _webhook_logs").fetchall()
    # the workflow's webhook action is queued in the webhook outbox for the dispatcher
    assert [h[0] for h in hooks] == ["workflow"]

    # 20000: the head approves, finance must too; finance rejects.
    body = {**body, "amount": 20000, "status": "submitted"}
    po = (await app.ok("POST", "purchase_order", body, 201))["data"]
    instance = await waiting_at(head, "head_review")
    await head.ok("POST", f"_workflows/{instance['id']}/approve", {"step": "head_review"})
    status, _ = await head.call("POST", f"_workflows/{instance['id']}/reject", {})
    # finance_review is not the head's, and the head may not read purchase orders (no policy):
    # the instance is hidden from the head now, like a missing one.
    assert status == 404
    status, _ = await finance.call("GET", f"_workflows/{instance['id']}")
    assert status == 200  # finance is the current step's assignee
    done = (await finance.ok("POST", f"_workflows/{instance['id']}/reject", {}))["data"]
    assert [h["status"] for h in done["history"]] == [
        "on_false",
        "approved",
        "on_true",
        "rejected",
        "completed",
    ]
    stored = (await app.ok("GET", f"purchase_order/{po['id']}"))["data"]
    assert stored["status"] == "rejected"
