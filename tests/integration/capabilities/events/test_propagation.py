"""One trace tells the whole story: a request's trace continues through the webhook delivery and
the workflow steps it caused, run later by the dispatcher and the runner (the trace id travels
in the outbox row and the instance row), and through sync hooks, approvals and timeouts."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from typing import Any

import psycopg

from rocketd.config import Settings
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.events import runtime_client, trace_rows
from tests.support.helpers import wait_until
from tests.support.receiver import Receiver
from tests.support.schemas import LEAVE, LEAVE_FLOW, set_status

TICKET = {
    "name": "ticket",
    "table": "tickets",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}, {"name": "title", "type": "string"}],
}


async def send(app: AppClient, method: str, path: str, body: Any, trace_id: str) -> Any:
    resp = await app.client.request(
        method, app.url(path), json=body, headers={**app.headers, "X-Trace-ID": trace_id}
    )
    assert resp.status < 300, await resp.text()
    return (await resp.json())["data"]


NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
}


def instance_ids(pg_dsn: str, app: AppClient) -> list[str]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        rows = conn.execute("select id from _workflow_instances order by created_at").fetchall()
    return [str(r[0]) for r in rows]


def one(rows: list[dict[str, Any]], action: str) -> dict[str, Any]:
    found = [r for r in rows if r["action"] == action]
    assert len(found) == 1, [r["action"] for r in rows]
    return found[0]


async def test_a_webhook_delivery_joins_the_request_trace(client: Any, receiver: Receiver) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", TICKET, 201)
    await app.ok("POST", "_admin/webhooks", {"entity": "ticket", "url": receiver.url}, 201)
    trace_id = str(uuid.uuid4())
    await send(app, "POST", "ticket", {"title": "a"}, trace_id)
    rows = await trace_rows(app, trace_id, at_least=1)

    async def delivered() -> bool:
        nonlocal rows
        rows = await trace_rows(app, trace_id)
        return any(r["action"] == "webhook.dispatch" for r in rows)

    await wait_until(delivered, "the delivery span")
    dispatch = one(rows, "webhook.dispatch")
    match = one(rows, "webhook.match")  # the stage that wrote the outbox row
    assert dispatch["parent_span_id"] == match["span_id"]
    assert (dispatch["source"], dispatch["component"]) == ("webhook", "dispatcher")
    assert dispatch["metadata"]["status_code"] == 200 and dispatch["status"] == "ok"
    assert dispatch["metadata"]["url"] == receiver.url
    assert receiver.received


async def test_a_sync_webhook_is_a_dispatch_span_of_the_request(
    client: Any, receiver: Receiver
) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", TICKET, 201)
    hook = {"entity": "ticket", "hook": "before_write", "url": receiver.url}
    await app.ok("POST", "_admin/webhooks", hook, 201)
    trace_id = str(uuid.uuid4())
    await send(app, "POST", "ticket", {"title": "a"}, trace_id)
    rows = await trace_rows(app, trace_id, at_least=4)
    dispatch = one(rows, "webhook.dispatch")
    assert dispatch["metadata"]["async"] is False and dispatch["metadata"]["status_code"] == 200
    assert dispatch["parent_span_id"] == one(rows, "webhook.match")["span_id"]


async def test_workflow_steps_join_the_trace_of_the_write_that_started_them(
    client: Any, receiver: Receiver
) -> None:
    app = await new_app(client)
    await app.load_schema({"entities": [LEAVE, NOTE]})
    flow = {
        "name": "filing",
        "trigger": {
            "type": "state_change",
            "entity": "leave_request",
            "field": "status",
            "to": "pending",
        },
        "context": {"record_id": "record.id"},
        "steps": [
            {
                "id": "file",
                "type": "action",
                "actions": [
                    {"type": "webhook", "url": receiver.url},
                    {"type": "send_event", "event": "leave.filed"},
                    set_status("filed"),
                ],
                "then": "end",
            }
        ],
        "active": True,
    }
    await app.ok("POST", "_admin/workflows", flow, 201)
    trace_id = str(uuid.uuid4())
    await send(app, "POST", "leave_request", {"days": 1, "status": "pending"}, trace_id)
    rows: list[dict[str, Any]] = []

    async def story_told() -> bool:
        nonlocal rows
        rows = await trace_rows(app, trace_id)
        actions = {r["action"] for r in rows}
        return {"workflow.advance", "webhook.dispatch", "leave.filed"} <= actions

    await wait_until(story_told, "the workflow's spans")
    trigger = one(rows, "workflow.trigger")
    request = one(rows, "request")
    advance = one(rows, "workflow.advance")
    assert advance["parent_span_id"] == trigger["span_id"]
    assert advance["metadata"]["workflow"] == "filing" and advance["metadata"]["step"] == "file"
    # the step's webhook action went through the outbox: its delivery is a child of the step
    assert one(rows, "webhook.dispatch")["parent_span_id"] == advance["span_id"]
    event = one(rows, "leave.filed")
    assert (event["event_type"], event["component"]) == ("business", "workflow")
    assert trigger["parent_span_id"] is not None and request["parent_span_id"] is None


async def test_timeout_span(client: Any) -> None:
    app = await new_app(client)
    await app.load_schema({"entities": [LEAVE, NOTE]})
    flow = copy.deepcopy(LEAVE_FLOW)
    flow["steps"][1]["timeout"] = "1s"
    await app.ok("POST", "_admin/workflows", flow, 201)
    started = str(uuid.uuid4())
    await send(app, "POST", "leave_request", {"days": 9, "status": "pending"}, started)

    async def timed_out() -> bool:
        rows = await trace_rows(app, started)
        return any(r["action"] == "workflow.timeout" for r in rows)

    await wait_until(timed_out, "the timeout span", timeout=15)
    rows = await trace_rows(app, started)
    assert one(rows, "workflow.timeout")["metadata"]["step"] == "manager_review"


async def test_reject_span(client: Any, pg_dsn: str) -> None:
    app = await new_app(client)
    await app.load_schema({"entities": [LEAVE, NOTE]})
    await app.ok("POST", "_admin/workflows", LEAVE_FLOW, 201)
    # decided by the admin (admins may act on any step)
    await send(app, "POST", "leave_request", {"days": 9, "status": "pending"}, str(uuid.uuid4()))
    [instance_id] = instance_ids(pg_dsn, app)

    async def waiting() -> bool:
        got = (await app.ok("GET", f"_workflows/{instance_id}"))["data"]
        return bool(got["current_step"] == "manager_review")

    await wait_until(waiting, "the approval step")
    decided = str(uuid.uuid4())
    await send(app, "POST", f"_workflows/{instance_id}/reject", {}, decided)
    rows = await trace_rows(app, decided, at_least=3)
    reject = one(rows, "workflow.reject")
    assert reject["metadata"]["instance_id"] == instance_id
    assert reject["source"] == "workflow" and reject["component"] == "handler"
    # the steps after the decision ran in the request: children of the reject span
    advance = [r for r in rows if r["action"] == "workflow.advance"]
    assert advance and all(a["parent_span_id"] == reject["span_id"] for a in advance)


async def test_failed_deliveries_and_open_circuits_are_spans(
    settings: Settings, aiohttp_client: Any, receiver: Receiver
) -> None:
    receiver.status = 500
    hooks = dataclasses.replace(settings.webhooks, breaker_threshold=1, breaker_cooldown=30.0)
    async with runtime_client(dataclasses.replace(settings, webhooks=hooks), aiohttp_client) as c:
        app = await new_app(c)
        await app.ok("POST", "_admin/entities", TICKET, 201)
        await app.ok("POST", "_admin/webhooks", {"entity": "ticket", "url": receiver.url}, 201)
        trace_id = str(uuid.uuid4())
        await send(app, "POST", "ticket", {"title": "a"}, trace_id)
        rows: list[dict[str, Any]] = []

        async def postponed() -> bool:
            nonlocal rows
            rows = await trace_rows(app, trace_id)
            return any(r["action"] == "webhook.circuit_open" for r in rows)

        await wait_until(postponed, "the open circuit's span")
    failed = one(rows, "webhook.dispatch")
    assert failed["status"] == "error" and failed["metadata"]["status_code"] == 500
    opened = next(r for r in rows if r["action"] == "webhook.circuit_open")
    assert opened["metadata"]["target"].startswith("http://127.0.0.1:")
    assert opened["parent_span_id"] == failed["parent_span_id"]  # both under webhook.match
