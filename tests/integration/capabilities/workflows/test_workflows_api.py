"""Workflows over HTTP: admin CRUD and save-time validation, instances created in the write
transaction, steps run after commit, approvals (assignee, stale and double decisions), timeouts,
and every action type."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import psycopg
import pytest

from rocketd.capabilities.workflows import instances as workflows
from rocketd.capabilities.workflows.runner import WorkflowRunner
from rocketd.engine.business_events import BUSINESS_EVENTS, BusinessEvent
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.db_users import grant_writes, user_client
from tests.support.helpers import wait_until
from tests.support.perms import cond, grant
from tests.support.perms import user_client as perms_user
from tests.support.receiver import Receiver
from tests.support.schemas import LEAVE, LEAVE_FLOW, set_status
from tests.support.upstream import NAMES, example, upstream_examples

PK = {"field": "id", "type": "uuid", "generated": True}
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": PK,
    "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
}


async def leave_app(client: Any, flow: dict[str, Any] | None = LEAVE_FLOW) -> AppClient:
    app = await new_app(client)
    await app.load_schema({"entities": [LEAVE, NOTE]})
    if flow is not None:
        await app.ok("POST", "_admin/workflows", flow, 201)
    return app


def db(pg_dsn: str, app: AppClient) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True)


async def instances_of(app: AppClient) -> list[dict[str, Any]]:
    return list((await app.ok("GET", "_workflows/pending"))["data"])


async def finished(app: AppClient, instance_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {}

    async def done() -> bool:
        got = (await app.ok("GET", f"_workflows/{instance_id}"))["data"]
        result.update(got)
        return bool(got["status"] != "running" or got["current_step_deadline"] is not None)

    await wait_until(done, "the instance to finish or wait", timeout=10)
    return result


def instance_ids(pg_dsn: str, app: AppClient) -> list[str]:
    with db(pg_dsn, app) as conn:
        rows = conn.execute("select id from _workflow_instances order by created_at").fetchall()
    return [str(r[0]) for r in rows]


def problems(payload: dict[str, Any]) -> str:
    assert payload["error"]["code"] == "VALIDATION_FAILED", payload
    return str(payload["error"]["message"])


# ------------------------------------------------------------------------------------- admin


async def test_workflow_crud(client: Any) -> None:
    app = await leave_app(client, None)
    created = (await app.ok("POST", "_admin/workflows", LEAVE_FLOW, 201))["data"]
    wf_id = created.pop("id")
    assert created == LEAVE_FLOW
    row = (await app.ok("GET", f"_admin/workflows/{wf_id}"))["data"]
    assert set(row) == {
        "id",
        "name",
        "trigger",
        "context",
        "steps",
        "active",
        "created_at",
        "updated_at",
    }
    listed = (await app.ok("GET", "_admin/workflows"))["data"]
    assert [w["id"] for w in listed] == [wf_id]
    updated = (await app.ok("PUT", f"_admin/workflows/{wf_id}", {"active": False}))["data"]
    assert updated["active"] is False and updated["steps"] == LEAVE_FLOW["steps"]
    status, body = await app.call("POST", "_admin/workflows", LEAVE_FLOW)
    assert status == 409 and body["error"]["code"] == "CONFLICT"
    deleted = (await app.ok("DELETE", f"_admin/workflows/{wf_id}"))["data"]
    assert deleted == {"id": wf_id, "deleted": True}
    status, body = await app.call("GET", f"_admin/workflows/{wf_id}")
    assert status == 404 and body["error"]["message"] == f"Workflow not found: {wf_id}"
    status, _ = await app.call("GET", "_admin/workflows/not-a-uuid")
    assert status == 404


async def test_save_time_validation(client: Any) -> None:
    app = await leave_app(client, None)

    async def rejected(change: dict[str, Any]) -> str:
        flow = {**copy.deepcopy(LEAVE_FLOW), **change}
        status, body = await app.call("POST", "_admin/workflows", flow)
        assert status == 422, body
        return problems(body)

    trigger = LEAVE_FLOW["trigger"]
    assert "unsupported trigger type: cron" in await rejected(
        {"trigger": {**trigger, "type": "cron"}}
    )
    assert "trigger entity is required" in await rejected({"trigger": {**trigger, "entity": ""}})
    assert "unknown entity: nope" in await rejected({"trigger": {**trigger, "entity": "nope"}})
    assert "workflow name is required" in await rejected({"name": ""})
    assert "at least one step is required" in await rejected({"steps": []})
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[1]["id"] = "check_days"
    assert "duplicate step id: check_days" in await rejected({"steps": steps})
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[0]["on_true"] = {"goto": "nowhere"}
    assert "goto target not found: nowhere" in await rejected({"steps": steps})
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[0]["expression"] = "context.days >"
    assert "invalid expression" in await rejected({"steps": steps})
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[0]["type"] = "wait"
    assert "invalid step type: wait" in await rejected({"steps": steps})
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[1]["timeout"] = "soon"
    assert "invalid timeout: soon" in await rejected({"steps": steps})
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[3]["then"] = {"goto": "check_days"}  # auto_approve -> check_days -> auto_approve
    assert "cycle without an approval step" in await rejected({"steps": steps})

    # A loop through an approval waits every time round: accepted. Unreachable steps warn.
    steps = copy.deepcopy(LEAVE_FLOW["steps"])
    steps[4]["then"] = {"goto": "manager_review"}
    steps.append({"id": "orphan", "type": "action", "actions": []})
    flow = {**copy.deepcopy(LEAVE_FLOW), "steps": steps}
    saved = (await app.ok("POST", "_admin/workflows", flow, 201))["data"]
    assert saved["warnings"] == ["step orphan is unreachable"]


@upstream_examples
@pytest.mark.parametrize("name", NAMES)
async def test_upstream_example_workflows_are_accepted(client: Any, name: str) -> None:
    schema = example(name)
    app = await new_app(client)
    await app.load_schema(schema)
    for flow in schema["workflows"]:
        await app.ok("POST", "_admin/workflows", flow, 201)
    assert len((await app.ok("GET", "_admin/workflows"))["data"]) == len(schema["workflows"])


# ---------------------------------------------------------------------------------- execution


async def test_short_leave_is_approved_after_commit(client: Any, pg_dsn: str) -> None:
    app = await leave_app(client)
    leave = (await app.ok("POST", "leave_request", {"days": 2, "status": "draft"}, 201))["data"]
    assert instance_ids(pg_dsn, app) == []  # no change to "pending": nothing started
    await app.ok("PUT", f"leave_request/{leave['id']}", {"status": "pending"})
    [instance_id] = instance_ids(pg_dsn, app)
    got = await finished(app, instance_id)
    assert got["status"] == "completed" and got["current_step"] is None
    assert [(h["step"], h["status"]) for h in got["history"]] == [
        ("check_days", "on_false"),
        ("auto_approve", "completed"),
    ]
    assert got["context"] == {"record_id": leave["id"], "days": 2, "manager": None}
    record = (await app.ok("GET", f"leave_request/{leave['id']}"))["data"]
    assert record["status"] == "approved" and record["decided_at"] is not None
    assert record["updated_at"] is not None  # a system write keeps auto timestamps
    # The system write did not re-trigger anything; writing "pending" again does nothing either.
    await app.ok("PUT", f"leave_request/{leave['id']}", {"days": 3})
    assert len(instance_ids(pg_dsn, app)) == 1


async def test_a_rolled_back_write_leaves_no_instance(client: Any, pg_dsn: str) -> None:
    app = await leave_app(client)
    rule = {
        "entity": "leave_request",
        "hook": "after_write",
        "type": "expression",
        "definition": {"expression": "record.days > 100", "message": "too long"},
    }
    await app.ok("POST", "_admin/rules", rule, 201)
    status, _ = await app.call("POST", "leave_request", {"days": 500, "status": "pending"})
    assert status == 422
    assert instance_ids(pg_dsn, app) == []
    await app.ok("POST", "leave_request", {"days": 1, "status": "pending"}, 201)  # create fires
    assert len(instance_ids(pg_dsn, app)) == 1


async def test_approvals_assignees_and_stale_decisions(client: Any, pg_dsn: str) -> None:
    app = await leave_app(client)
    manager, manager_id = await user_client(client, pg_dsn, app, "manager")
    hr, hr_id = await user_client(client, pg_dsn, app, "hr")
    grant_writes(pg_dsn, app, "leave_request", "hr")
    # The manager may read leave requests, so sees the instance after its own step too.
    await grant(app, "leave_request", "read", ["manager"])
    await app.ok("POST", "_admin/entities", {**NOTE, "name": "memo", "table": "memos"}, 201)
    body = {"days": 8, "status": "pending", "manager_id": hr_id}
    leave = (await hr.ok("POST", "leave_request", body, 201))["data"]
    [instance_id] = instance_ids(pg_dsn, app)
    got = await finished(app, instance_id)
    assert got["current_step"] == "manager_review" and got["current_step_deadline"] is not None
    assert [h["step"] for h in got["history"]] == ["check_days"]  # entering adds no entry

    assert [i["id"] for i in await instances_of(manager)] == [instance_id]
    assert await instances_of(hr) == []  # hr is not the manager_review assignee
    status, body = await hr.call("POST", f"_workflows/{instance_id}/approve", {})
    assert status == 403, body
    resp = await client.post(
        manager.url(f"_workflows/{instance_id}/approve"),
        json={"comment": "ok by me"},
        headers={**manager.headers, "X-User-ID": "spoofed"},  # never trusted
    )
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert data["current_step"] == "hr_review"
    entry = data["history"][-1]
    assert entry["status"] == "approved" and entry["by"] == manager_id
    assert entry["comment"] == "ok by me"

    # The same approval again, or one naming a step that is no longer current: INVALID_STATE.
    status, body = await manager.call(
        "POST", f"_workflows/{instance_id}/approve", {"step": "manager_review"}
    )
    assert status == 422 and body["error"]["code"] == "INVALID_STATE", body
    # hr_review's assignee is the relation path: the user named in the record.
    assert [i["id"] for i in await instances_of(hr)] == [instance_id]
    status, _ = await manager.call("POST", f"_workflows/{instance_id}/reject", {})
    assert status == 403
    status, body = await hr.call("POST", f"_workflows/{instance_id}/reject", {"comment": "no"})
    assert status == 200, body
    assert body["data"]["status"] == "completed"
    assert [h["status"] for h in body["data"]["history"]] == [
        "on_true",
        "approved",
        "rejected",
        "completed",
    ]
    record = (await app.ok("GET", f"leave_request/{leave['id']}"))["data"]
    assert record["status"] == "rejected"
    status, body = await app.call("POST", f"_workflows/{instance_id}/approve", {})
    assert status == 422 and body["error"]["code"] == "INVALID_STATE"
    assert body["error"]["message"] == "workflow instance is not running (status: completed)"

    missing = "00000000-0000-0000-0000-000000000000"
    status, body = await app.call("POST", f"_workflows/{missing}/approve", {})
    assert status == 404
    status, body = await app.call("GET", f"_workflows/{missing}")
    assert status == 404
    assert (await app.ok("DELETE", f"_workflows/{missing}"))["data"] == {"deleted": True}
    assert (await app.ok("DELETE", f"_workflows/{instance_id}"))["data"] == {"deleted": True}
    assert instance_ids(pg_dsn, app) == []


async def test_timeouts_follow_on_timeout(client: Any, pg_dsn: str) -> None:
    flow = copy.deepcopy(LEAVE_FLOW)
    flow["steps"][1]["timeout"] = "1s"
    app = await leave_app(client, flow)
    leave = (await app.ok("POST", "leave_request", {"days": 9, "status": "pending"}, 201))["data"]
    [instance_id] = instance_ids(pg_dsn, app)

    async def timed_out() -> bool:
        got = (await app.ok("GET", f"_workflows/{instance_id}"))["data"]
        return bool(got["status"] == "completed")

    await wait_until(timed_out, "the timeout to fire", timeout=15)
    got = (await app.ok("GET", f"_workflows/{instance_id}"))["data"]
    assert [h["status"] for h in got["history"]] == ["on_true", "timed_out", "completed"]
    record = (await app.ok("GET", f"leave_request/{leave['id']}"))["data"]
    assert record["status"] == "rejected"


async def test_timeout_without_on_timeout_fails(client: Any, pg_dsn: str) -> None:
    flow = copy.deepcopy(LEAVE_FLOW)
    flow["steps"][1]["timeout"] = "500ms"
    del flow["steps"][1]["on_timeout"]
    app = await leave_app(client, flow)
    await app.ok("POST", "leave_request", {"days": 9, "status": "pending"}, 201)
    [instance_id] = instance_ids(pg_dsn, app)

    async def failed() -> bool:
        got = (await app.ok("GET", f"_workflows/{instance_id}"))["data"]
        return bool(got["status"] == "failed")

    await wait_until(failed, "the instance to fail on its timeout", timeout=15)


async def test_every_action_type(client: Any, runtime: Any, pg_dsn: str) -> None:
    """Each action does its job end to end: the webhook reaches a real receiver through the
    webhook dispatcher (logged as `source = workflow`), the event reaches the business-event
    sink after the step commits."""
    events: list[BusinessEvent] = []

    async def sink(app: Any, event: BusinessEvent) -> None:
        events.append(event)

    runtime.installation.services[BUSINESS_EVENTS] = sink
    receiver = await Receiver().start()
    flow = {
        "name": "all_actions",
        "trigger": {
            "type": "state_change",
            "entity": "leave_request",
            "field": "status",
            "to": "filed",
        },
        "context": {"record_id": "trigger.record_id", "days": "trigger.record.days"},
        "steps": [
            {
                "id": "act",
                "type": "action",
                "actions": [
                    {
                        "type": "create_record",
                        "entity": "note",
                        "data": {"text": "context.record_id"},
                    },
                    {"type": "webhook", "url": receiver.url, "method": "put"},
                    {"type": "send_event", "event": "leave.filed"},
                    set_status("archived"),
                ],
            }
        ],
    }
    try:
        app = await leave_app(client, flow)
        leave = (await app.ok("POST", "leave_request", {"days": 4, "status": "filed"}, 201))["data"]
        [instance_id] = instance_ids(pg_dsn, app)
        got = await finished(app, instance_id)
        assert got["status"] == "completed", got
        notes = (await app.ok("GET", "note"))["data"]
        assert [n["text"] for n in notes] == [leave["id"]]
        await wait_until(lambda: len(receiver.received) == 1, "the webhook delivery")
        (delivery,) = receiver.received
        assert delivery.method == "PUT"
        assert delivery.json["source"] == "workflow" and delivery.json["data"]["days"] == 4
        with db(pg_dsn, app) as conn:
            logs = conn.execute(
                "select source, status, url from _webhook_logs where source = 'workflow'"
            ).fetchall()
        assert [(r[0], r[2]) for r in logs] == [("workflow", receiver.url)]
        await wait_until(lambda: events != [], "the business event")
        (event,) = events
        assert (event.action, event.source, event.entity) == (
            "leave.filed",
            "workflow",
            "leave_request",
        )
        assert event.record_id == leave["id"] and event.metadata["data"]["days"] == 4
        record = (await app.ok("GET", f"leave_request/{leave['id']}"))["data"]
        assert record["status"] == "archived"
    finally:
        await receiver.stop()


async def test_failed_action_fails_the_instance_and_rolls_back_its_step(
    client: Any, pg_dsn: str
) -> None:
    flow = copy.deepcopy(LEAVE_FLOW)
    flow["steps"][3]["actions"] = [
        {"type": "create_record", "entity": "note", "data": {"text": "made"}},
        {**set_status("approved"), "record_id": "context.missing"},
    ]
    app = await leave_app(client, flow)
    await app.ok("POST", "leave_request", {"days": 1, "status": "pending"}, 201)
    [instance_id] = instance_ids(pg_dsn, app)
    got = await finished(app, instance_id)
    assert got["status"] == "failed"
    assert got["history"][-1]["step"] == "auto_approve"
    assert "resolved to null" in got["history"][-1]["error"]
    assert (await app.ok("GET", "note"))["data"] == []  # the step's first action rolled back


# ------------------------------------------------------------------------------- retention


async def test_retention_deletes_only_old_finished_instances(
    client: Any, runtime: Any, pg_dsn: str
) -> None:
    app = await leave_app(client)
    ids: dict[str, str] = {}
    for name, days in (("old_done", 2), ("new_done", 1), ("old_waiting", 9)):
        leave = await app.ok("POST", "leave_request", {"days": days, "status": "draft"}, 201)
        await app.ok("PUT", f"leave_request/{leave['data']['id']}", {"status": "pending"})
        ids[name] = instance_ids(pg_dsn, app)[-1]
        await finished(app, ids[name])
    with db(pg_dsn, app) as conn:
        conn.execute(
            "update _workflow_instances set updated_at = now() - interval '40 days'"
            " where id = any(%s::uuid[])",
            ([ids["old_done"], ids["old_waiting"]],),
        )
        statuses = dict(conn.execute("select id::text, status from _workflow_instances").fetchall())
    assert statuses == {
        ids["old_done"]: "completed",
        ids["new_done"]: "completed",
        ids["old_waiting"]: "running",  # waiting at its approval step
    }
    # The scheduler job as `workflow_retention_days: 30` installs it.
    runner = WorkflowRunner(runtime.services.directory, retention_days=30)
    await runner.purge()
    assert sorted(instance_ids(pg_dsn, app)) == sorted([ids["new_done"], ids["old_waiting"]])
    await runner.purge()  # nothing left to delete: no error, nothing else touched
    assert len(instance_ids(pg_dsn, app)) == 2


async def test_purge_works_in_batches(client: Any, pg_dsn: str, monkeypatch: Any) -> None:
    app = await leave_app(client)
    with db(pg_dsn, app) as conn:
        (workflow_id,) = conn.execute("select id from _workflows").fetchone() or (None,)
        conn.execute(
            "insert into _workflow_instances (workflow_id, workflow_name, status, updated_at)"
            " select %s, 'leave_approval', 'failed', now() - interval '2 days'"
            " from generate_series(1, 7)",
            (workflow_id,),
        )
    monkeypatch.setattr(workflows, "PURGE_BATCH", 3)
    async with await psycopg.AsyncConnection.connect(
        dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True
    ) as conn:
        assert await workflows.purge_finished(conn, 3) == 0  # not old enough
        assert await workflows.purge_finished(conn, 1) == 7  # batches of 3, 3, 1
    assert instance_ids(pg_dsn, app) == []


# ------------------------------------------------------------------------- who sees instances


def review_flow(name: str, assignee: dict[str, Any] | None) -> dict[str, Any]:
    step: dict[str, Any] = {"id": "review", "type": "approval", "on_approve": "end"}
    if assignee is not None:
        step["assignee"] = assignee
    return {
        "name": name,
        "trigger": {
            "type": "state_change",
            "entity": "leave_request",
            "field": "status",
            "to": "pending",
        },
        "context": {"record_id": "record.id", "days": "record.days"},
        "steps": [step],
    }


async def test_instances_of_hidden_records_are_not_found(client: Any, pg_dsn: str) -> None:
    """An instance carries values copied from its record: only admins, users who may read the
    record and the assignees of its current step see it (or act on it); everybody else gets the
    404 of a missing instance, on every route."""
    app = await leave_app(client, None)
    await app.ok("POST", "_admin/workflows", review_flow("open_review", None), 201)
    manager_only = review_flow("manager_review", {"type": "role", "role": "manager"})
    await app.ok("POST", "_admin/workflows", manager_only, 201)
    await grant(app, "leave_request", "read", ["staff"], [cond("days", "lt", 100)])
    staff = await perms_user(app, "staff@x.io", ["staff"])
    manager = await perms_user(app, "manager@x.io", ["manager"])  # may not read leave_request
    outsider = await perms_user(app, "outsider@x.io", ["outsider"])
    short = (await app.ok("POST", "leave_request", {"days": 8, "status": "pending"}, 201))["data"]
    secret = {"days": 500, "status": "pending"}
    long = (await app.ok("POST", "leave_request", secret, 201))["data"]
    with db(pg_dsn, app) as conn:
        rows = conn.execute(
            "select workflow_name, trigger_record_id, id from _workflow_instances"
        ).fetchall()
    ids = {(name, record): str(i) for name, record, i in rows}
    open_short, open_long = ids["open_review", short["id"]], ids["open_review", long["id"]]
    mgr_short, mgr_long = ids["manager_review", short["id"]], ids["manager_review", long["id"]]

    async def like_missing(user: AppClient, method: str, suffix: str, hidden: str) -> None:
        missing = str(uuid.uuid4())
        got = await user.call(method, f"_workflows/{hidden}{suffix}", {})
        expected = await user.call(method, f"_workflows/{missing}{suffix}", {})
        assert got[0] == expected[0] == 404, (method, suffix, got)
        assert json.dumps(got[1]).replace(hidden, "ID") == json.dumps(expected[1]).replace(
            missing, "ID"
        )

    # Reading: the record's read filter decides, and the assignee of the current step sees it.
    assert (await staff.ok("GET", f"_workflows/{open_short}"))["data"]["context"]["days"] == 8
    await staff.ok("GET", f"_workflows/{mgr_short}")
    for hidden in (open_long, mgr_long):
        await like_missing(staff, "GET", "", hidden)
    for hidden in (open_short, open_long, mgr_short, mgr_long):
        await like_missing(outsider, "GET", "", hidden)
    assert (await manager.ok("GET", f"_workflows/{mgr_long}"))["data"]["context"]["days"] == 500
    await like_missing(manager, "GET", "", open_long)
    for hidden in (open_short, open_long, mgr_short, mgr_long):
        await app.ok("GET", f"_workflows/{hidden}")  # admins see everything

    # The pending list: what the caller may act on *and* may see.
    async def pending_of(user: AppClient) -> set[str]:
        return {i["id"] for i in (await user.ok("GET", "_workflows/pending"))["data"]}

    assert await pending_of(staff) == {open_short}
    assert await pending_of(outsider) == set()
    assert await pending_of(manager) == {mgr_short, mgr_long}
    assert await pending_of(app) == {open_short, open_long, mgr_short, mgr_long}

    # Deciding or cancelling a hidden instance: the answer of a missing one, and nothing changes.
    for user in (staff, outsider):
        await like_missing(user, "POST", "/approve", open_long)
        await like_missing(user, "POST", "/reject", open_long)
        assert (await user.ok("DELETE", f"_workflows/{open_long}"))["data"] == {"deleted": True}
    with db(pg_dsn, app) as conn:
        row = conn.execute(
            "select status, history from _workflow_instances where id = %s", (open_long,)
        ).fetchone()
    assert row == ("running", [])
    # Who may see and act still can.
    done = (await staff.ok("POST", f"_workflows/{open_short}/approve", {}))["data"]
    assert done["status"] == "completed"
    done = (await manager.ok("POST", f"_workflows/{mgr_long}/approve", {}))["data"]
    assert done["status"] == "completed" and done["context"]["days"] == 500


async def test_admin_lists_a_workflows_instances(client: Any) -> None:
    app = await leave_app(client)
    [flow] = (await app.ok("GET", "_admin/workflows"))["data"]
    for days in (2, 8):  # one runs to completion, one waits for the manager
        leave = await app.ok("POST", "leave_request", {"days": days, "status": "draft"}, 201)
        await app.ok("PUT", f"leave_request/{leave['data']['id']}", {"status": "pending"})

    async def both_settled() -> bool:
        rows = (await app.ok("GET", f"_admin/workflows/{flow['id']}/instances"))["data"]
        steps = sorted((r["status"], r["current_step"] or "") for r in rows)
        return steps == [("completed", ""), ("running", "manager_review")]

    await wait_until(both_settled, "both instances to settle", timeout=10)
    running = await app.ok("GET", f"_admin/workflows/{flow['id']}/instances?status=running")
    [waiting] = running["data"]
    assert waiting["current_step"] == "manager_review" and waiting["context"]["days"] == 8
    assert set(waiting) >= {"id", "workflow_name", "status", "history", "created_at"}
    status, body = await app.call("GET", f"_admin/workflows/{flow['id']}/instances?status=odd")
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", body
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        status, body = await app.call("GET", f"_admin/workflows/{missing}/instances")
        assert status == 404 and body["error"]["message"] == f"Workflow not found: {missing}"
