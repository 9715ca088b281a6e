"""State machines over HTTP: the admin routes (`/_admin/state-machines`), initial states,
transitions, roles, guards and every action inside the write transaction, and the upstream
example schemas' rules and machines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from rocketd.engine.business_events import BUSINESS_EVENTS, BusinessEvent
from tests.support.apps import AppClient, example_schema, new_app
from tests.support.databases import dsn_for
from tests.support.db_users import grant_writes, user_client
from tests.support.upstream import NAMES, example, upstream_examples

PK = {"field": "id", "type": "uuid", "generated": True}
STATES = ["open", "assigned", "resolved", "on_hold", "closed"]
TICKET = {
    "name": "ticket",
    "table": "tickets",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string"},
        {"name": "status", "type": "string", "enum": STATES},
        {"name": "resolution", "type": "text"},
        {"name": "closed_at", "type": "timestamp"},
        {"name": "closed_by", "type": "string"},
        {"name": "created_at", "type": "timestamp", "auto": "create"},
    ],
}
AUDIT = {
    "name": "audit",
    "table": "audits",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "ticket_id", "type": "uuid"},
        {"name": "note", "type": "string", "required": True},
    ],
}
MACHINE: dict[str, Any] = {
    "entity": "ticket",
    "field": "status",
    "active": True,
    "definition": {
        "initial": "open",
        "transitions": [
            {"from": "open", "to": "assigned"},
            {"from": "assigned", "to": "resolved", "guard": "record.resolution != nil"},
            {"from": "assigned", "to": "on_hold"},
            {
                "from": ["resolved", "on_hold"],
                "to": "closed",
                "roles": ["agent"],
                "actions": [
                    {"type": "set_field", "field": "closed_at", "value": "now"},
                    {"type": "set_field", "field": "closed_by", "value": "{{ user.id }}"},
                ],
            },
        ],
    },
}


async def helpdesk(client: Any, machine: dict[str, Any] | None = MACHINE) -> AppClient:
    app = await new_app(client)
    await app.load_schema({"entities": [TICKET, AUDIT]})
    if machine is not None:
        await app.ok("POST", "_admin/state-machines", machine, 201)
    return app


def app_rows(pg_dsn: str, app: AppClient, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), row_factory=dict_row) as conn:
        return list(conn.execute(query).fetchall())  # type: ignore[arg-type]


async def move(app: AppClient, ticket: dict[str, Any], status: str, **extra: Any) -> Any:
    return await app.call("PUT", f"ticket/{ticket['id']}", {"status": status, **extra})


def details(payload: dict[str, Any]) -> list[dict[str, str]]:
    assert payload["error"]["code"] == "VALIDATION_FAILED", payload
    return list(payload["error"]["details"])


# ------------------------------------------------------------------------------ admin routes


async def test_state_machine_crud_and_graph(client: Any) -> None:
    app = await helpdesk(client, None)
    created = (await app.ok("POST", "_admin/state-machines", MACHINE, 201))["data"]
    machine_id = created.pop("id")
    assert created == MACHINE

    row = (await app.ok("GET", f"_admin/state-machines/{machine_id}"))["data"]
    graph = row.pop("graph")
    assert set(row) == {
        "id",
        "entity",
        "field",
        "definition",
        "active",
        "created_at",
        "updated_at",
    }
    assert [s["name"] for s in graph["states"]] == STATES
    assert {
        "from": "on_hold",
        "to": "closed",
        "roles": ["agent"],
        "guarded": False,
        "actions": ["set_field", "set_field"],
    } in graph["edges"]

    listing = (await app.ok("GET", "_admin/state-machines"))["data"]
    assert [m["id"] for m in listing] == [machine_id]
    assert "graph" not in listing[0]

    updated = await app.ok("PUT", f"_admin/state-machines/{machine_id}", {"active": False})
    assert updated["data"] == {**MACHINE, "id": machine_id, "active": False}

    assert (await app.ok("DELETE", f"_admin/state-machines/{machine_id}"))["data"] == {
        "id": machine_id,
        "deleted": True,
    }
    for raw in (machine_id, "nope"):
        status, payload = await app.call("GET", f"_admin/state-machines/{raw}")
        assert status == 404
        assert payload["error"]["message"] == f"State machine not found: {raw}"


async def test_state_machine_bodies_are_validated(client: Any) -> None:
    app = await helpdesk(client, None)
    definition = MACHINE["definition"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"field": "status", "definition": definition}, "entity is required"),
        ({**MACHINE, "entity": "ghost"}, "entity not found: ghost"),
        ({"entity": "ticket", "definition": definition}, "field is required"),
        ({**MACHINE, "field": "phase"}, "field not found: ticket.phase"),
        ({**MACHINE, "definition": {"transitions": []}}, "at least one transition is required"),
        (
            {**MACHINE, "definition": {"transitions": [{"from": "open", "to": "done"}]}},
            "state 'done' is not in the enum of ticket.status",
        ),
        (
            {
                **MACHINE,
                "definition": {
                    "transitions": [
                        {"from": "open", "to": "closed"},
                        {"from": ["open"], "to": "closed"},
                    ]
                },
            },
            "duplicate transition from 'open' to 'closed'",
        ),
        (
            {
                **MACHINE,
                "definition": {
                    "transitions": [{"from": "open", "to": "closed", "guard": "record.x &&"}]
                },
            },
            "invalid expression: ",
        ),
    ]
    for body, expected in cases:
        status, payload = await app.call("POST", "_admin/state-machines", body)
        assert status == 422, (body, payload)
        assert payload["error"]["message"].startswith(expected), (expected, payload)
    status, payload = await app.call("POST", "_admin/state-machines", {**MACHINE, "states": []})
    assert status == 400 and payload["error"]["code"] == "INVALID_PAYLOAD"

    await app.ok("POST", "_admin/state-machines", MACHINE, 201)
    status, payload = await app.call("POST", "_admin/state-machines", MACHINE)
    assert status == 409 and payload["error"]["code"] == "CONFLICT"


# ----------------------------------------------------------------------- machines on writes


async def test_initial_state_on_create(client: Any) -> None:
    app = await helpdesk(client)
    ticket = (await app.ok("POST", "ticket", {"title": "printer"}, 201))["data"]
    assert ticket["status"] == "open"
    await app.ok("POST", "ticket", {"title": "explicit", "status": "open"}, 201)
    status, payload = await app.call("POST", "ticket", {"status": "closed"})
    assert status == 422
    assert details(payload) == [
        {
            "message": "Initial state must be 'open', got 'closed'",
            "field": "status",
            "rule": "state_machine",
        }
    ]


async def test_required_state_field_without_default_gets_the_initial_state(
    client: Any,
) -> None:
    app = await new_app(client)
    strict = {
        **TICKET,
        "fields": [
            {**f, "required": True} if f["name"] == "status" else f for f in TICKET["fields"]
        ],
    }
    await app.load_schema({"entities": [strict, AUDIT]})
    await app.ok("POST", "_admin/state-machines", MACHINE, 201)
    ticket = (await app.ok("POST", "ticket", {"title": "no status sent"}, 201))["data"]
    assert ticket["status"] == "open"


async def test_transitions_guards_and_set_field_actions(client: Any) -> None:
    app = await helpdesk(client)
    ticket = (await app.ok("POST", "ticket", {"title": "t"}, 201))["data"]
    status, payload = await move(app, ticket, "closed")
    assert status == 422
    assert details(payload) == [
        {
            "message": "Invalid transition from 'open' to 'closed'",
            "field": "status",
            "rule": "state_machine",
        }
    ]
    assert (await move(app, ticket, "assigned"))[0] == 200
    status, payload = await move(app, ticket, "resolved")
    assert details(payload)[0]["message"] == (
        "Transition from 'assigned' to 'resolved' blocked by guard"
    )
    # The guard sees the merged record: the resolution sent with the state counts.
    assert (await move(app, ticket, "resolved", resolution="rebooted"))[0] == 200
    before = datetime.now(UTC) - timedelta(seconds=5)
    status, payload = await move(app, ticket, "closed")
    assert status == 200, payload
    closed = payload["data"]
    assert closed["status"] == "closed"
    assert datetime.fromisoformat(closed["closed_at"].replace("Z", "+00:00")) > before
    assert closed["closed_by"]  # the admin's user id, from a {{ }} value
    # Writing the same state again is no transition.
    assert (await move(app, ticket, "closed", title="again"))[0] == 200


async def test_transition_roles_are_enforced(client: Any, pg_dsn: str) -> None:
    app = await new_app(client)
    await app.load_schema({"entities": [TICKET, AUDIT]})
    for role in ("agent", "clerk"):
        grant_writes(pg_dsn, app, "ticket", role)
    await app.ok("POST", "_admin/state-machines", MACHINE, 201)  # reloads permissions too
    clerk, _ = await user_client(client, pg_dsn, app, "clerk")
    agent, agent_id = await user_client(client, pg_dsn, app, "agent")

    ticket = (await clerk.ok("POST", "ticket", {"title": "t"}, 201))["data"]
    assert (await move(clerk, ticket, "assigned"))[0] == 200
    assert (await move(clerk, ticket, "on_hold"))[0] == 200
    status, payload = await move(clerk, ticket, "closed")
    assert status == 403
    assert payload["error"]["code"] == "FORBIDDEN"
    assert payload["error"]["message"] == (
        "Transition from 'on_hold' to 'closed' requires one of roles: agent"
    )
    stored = (await app.ok("GET", f"ticket/{ticket['id']}"))["data"]
    assert stored["status"] == "on_hold" and stored["closed_at"] is None
    status, payload = await move(agent, ticket, "closed")
    assert status == 200, payload
    assert payload["data"]["closed_by"] == agent_id


async def test_create_record_action_is_a_system_write_without_the_targets_rules(
    client: Any, pg_dsn: str
) -> None:
    """The created record is a system write (issue 14): the target's rules are API-only, so they
    do not judge it; the transition and the record commit together."""
    machine = {
        "entity": "ticket",
        "field": "status",
        "definition": {
            "transitions": [
                {
                    "from": "open",
                    "to": "assigned",
                    "actions": [
                        {
                            "type": "create_record",
                            "entity": "audit",
                            "data": {"ticket_id": "{{ record.id }}", "note": "{{ record.title }}"},
                        },
                    ],
                },
            ]
        },
    }
    app = await helpdesk(client, machine)
    await app.ok(
        "POST",
        "_admin/rules",
        {
            "entity": "audit",
            "hook": "before_write",
            "type": "field",
            "definition": {
                "field": "note",
                "operator": "min_length",
                "value": 3,
                "message": "note too short",
            },
        },
        201,
    )
    short = (await app.ok("POST", "ticket", {"title": "ab", "status": "open"}, 201))["data"]
    status, payload = await move(app, short, "assigned")
    assert status == 200, payload
    assert (await app.ok("GET", f"ticket/{short['id']}"))["data"]["status"] == "assigned"
    assert [r["note"] for r in app_rows(pg_dsn, app, "select note from audits")] == ["ab"]
    # the same record sent by a client is judged by the rule
    status, payload = await app.call("POST", "audit", {"ticket_id": short["id"], "note": "ab"})
    assert status == 422
    assert details(payload) == [
        {"message": "note too short", "field": "note", "rule": "min_length"}
    ]

    ticket = (await app.ok("POST", "ticket", {"title": "printer", "status": "open"}, 201))["data"]
    assert (await move(app, ticket, "assigned"))[0] == 200
    (audit,) = app_rows(pg_dsn, app, "select * from audits where note = 'printer'")
    assert str(audit["ticket_id"]) == ticket["id"]


async def test_webhook_and_event_actions_commit_with_the_write(
    client: Any, runtime: Any, pg_dsn: str
) -> None:
    """A `webhook` action is a row of the webhook outbox (delivered after commit); `send_event`
    is a business event, handed to the installed sink once the transition is decided."""
    events: list[BusinessEvent] = []

    async def sink(app: Any, event: BusinessEvent) -> None:
        events.append(event)

    runtime.installation.services[BUSINESS_EVENTS] = sink
    machine = {
        "entity": "ticket",
        "field": "status",
        "definition": {
            "transitions": [
                {
                    "from": "open",
                    "to": "assigned",
                    "actions": [
                        {"type": "webhook", "url": "https://hooks.example.com/t"},
                        {
                            "type": "send_event",
                            "event": "ticket.assigned",
                            "data": {"title": "{{ record.title }}"},
                        },
                    ],
                },
                {
                    "from": "assigned",
                    "to": "closed",
                    "actions": [
                        {"type": "webhook", "url": "https://hooks.example.com/t", "method": "put"},
                        {"type": "send_event", "event": "ticket.closed"},
                        {"type": "create_record", "entity": "audit", "data": {"note": ""}},
                    ],
                },
            ]
        },
    }
    app = await helpdesk(client, machine)
    ticket = (await app.ok("POST", "ticket", {"title": "printer", "status": "open"}, 201))["data"]
    assert events == []  # no actions on create
    assert app_rows(pg_dsn, app, "select * from _webhook_logs") == []

    status, payload = await move(app, ticket, "assigned")
    assert status == 200, payload
    (event,) = events
    assert (event.action, event.source, event.entity) == (
        "ticket.assigned",
        "state_machine",
        "ticket",
    )
    assert event.record_id == ticket["id"]
    # The webhook action goes through the webhook outbox (delivered after commit, logged).
    (log,) = app_rows(pg_dsn, app, "select * from _webhook_logs")
    assert (log["source"], log["webhook_id"], log["entity"]) == ("state_machine", None, "ticket")
    assert log["url"] == "https://hooks.example.com/t" and log["method"] == "POST"
    webhook = log["request_body"]
    assert webhook["record"]["status"] == "assigned" and webhook["record_id"] == ticket["id"]
    assert (webhook["from"], webhook["to"], webhook["field"]) == ("open", "assigned", "status")
    assert webhook["idempotency_key"] == log["idempotency_key"]
    assert event.metadata["data"] == {"title": "printer"}
    assert (event.metadata["from"], event.metadata["to"]) == ("open", "assigned")
    assert app_rows(pg_dsn, app, "select * from _outbox") == []  # nothing writes it any more

    # The create_record action fails (its required note is empty): the whole write, outbox rows
    # included, rolls back.
    status, payload = await move(app, ticket, "closed")
    assert status == 422, payload
    assert len(app_rows(pg_dsn, app, "select * from _webhook_logs")) == 1
    assert [e.action for e in events] == ["ticket.assigned"]  # ticket.closed never committed
    assert (await app.ok("GET", f"ticket/{ticket['id']}"))["data"]["status"] == "assigned"


async def test_machines_of_several_fields_and_inactive_machines(client: Any) -> None:
    app = await helpdesk(client)
    machine_id = (await app.ok("GET", "_admin/state-machines"))["data"][0]["id"]
    await app.ok("PUT", f"_admin/state-machines/{machine_id}", {"active": False})
    ticket = (await app.ok("POST", "ticket", {"status": "closed"}, 201))["data"]
    assert (await move(app, ticket, "open"))[0] == 200


# ------------------------------------------------------------------- upstream example schemas


@upstream_examples
@pytest.mark.parametrize("name", NAMES)
async def test_upstream_rules_and_state_machines_are_accepted(client: Any, name: str) -> None:
    schema = example(name)
    app = await new_app(client)
    await app.load_schema(schema)
    for rule in schema["rules"]:
        await app.ok("POST", "_admin/rules", rule, 201)
    for machine in schema["state_machines"]:
        created = (await app.ok("POST", "_admin/state-machines", machine, 201))["data"]
        graph = (await app.ok("GET", f"_admin/state-machines/{created['id']}"))["data"]["graph"]
        assert graph["initial"] == machine["definition"]["initial"]
    assert len((await app.ok("GET", "_admin/rules"))["data"]) == len(schema["rules"])


@upstream_examples
async def test_upstream_post_workflow_with_editor_role(client: Any, pg_dsn: str) -> None:
    schema = example("content-management")
    app = await new_app(client)
    await app.load_schema(schema)
    for role in ("editor", "writer"):
        grant_writes(pg_dsn, app, "post", role)
    for rule in schema["rules"]:
        await app.ok("POST", "_admin/rules", rule, 201)
    for machine in schema["state_machines"]:
        await app.ok("POST", "_admin/state-machines", machine, 201)
    writer, _ = await user_client(client, pg_dsn, app, "writer")
    editor, _ = await user_client(client, pg_dsn, app, "editor")
    required = {"body": "Text", "author_id": str(uuid.uuid4())}

    status, payload = await writer.call(
        "POST", "post", {"title": "Hi", "slug": "Bad Slug", **required}
    )
    assert status == 422
    assert {d["message"] for d in details(payload)} == {
        "Title must be at least 3 characters",
        "Slug must be lowercase with hyphens only (e.g. my-post-title)",
    }
    post = (await writer.ok("POST", "post", {"title": "Hello", **required}, 201))["data"]
    assert post["slug"] == "hello"
    assert post["status"] == "draft"
    assert (await writer.call("PUT", f"post/{post['id']}", {"status": "review"}))[0] == 200
    status, _ = await writer.call("PUT", f"post/{post['id']}", {"status": "published"})
    assert status == 403
    status, payload = await editor.call("PUT", f"post/{post['id']}", {"status": "published"})
    assert status == 200, payload
    assert payload["data"]["published_at"] is not None


@upstream_examples
async def test_upstream_leave_request_rules_and_machine(client: Any) -> None:
    schema = example("employee-management")
    app = await new_app(client)
    await app.load_schema(schema)
    for rule in schema["rules"]:
        await app.ok("POST", "_admin/rules", rule, 201)
    for machine in schema["state_machines"]:
        await app.ok("POST", "_admin/state-machines", machine, 201)
    body = {
        "employee_id": str(uuid.uuid4()),
        "type": "annual",
        "start_date": "2026-03-10",
        "end_date": "2026-03-12",
        "days": 31,
    }
    status, payload = await app.call("POST", "leave_request", body)
    assert status == 422
    # The file's date rule reads as a condition that must hold, but an expression rule is
    # violated when its expression is TRUE (spec section 1): with end >= start it fires.
    assert {d["message"] for d in details(payload)} == {
        "Leave cannot exceed 30 days",
        "End date must be on or after start date",
    }
    rules = (await app.ok("GET", "_admin/rules"))["data"]
    dates = next(r for r in rules if r["type"] == "expression")
    await app.ok("PUT", f"_admin/rules/{dates['id']}", {"active": False})
    body["days"] = 3
    request = (await app.ok("POST", "leave_request", body, 201))["data"]
    assert request["status"] == "pending"
    moved = await app.call("PUT", f"leave_request/{request['id']}", {"status": "manager_approved"})
    assert moved[0] == 200
    done = await app.call("PUT", f"leave_request/{request['id']}", {"status": "approved"})
    assert done[0] == 200 and done[1]["data"]["approved_at"] is not None


# ----------------------------------------------------------------------- docs/state-machines.md


async def test_docs_page_example(client: Any, runtime: Any, pg_dsn: str) -> None:
    events: list[BusinessEvent] = []

    async def sink(app: Any, event: BusinessEvent) -> None:
        events.append(event)

    runtime.installation.services[BUSINESS_EVENTS] = sink
    app = await new_app(client)
    await app.load_schema(example_schema("invoicing"))
    machine = {
        "entity": "invoice",
        "field": "status",
        "definition": {
            "initial": "draft",
            "transitions": [
                {
                    "from": "draft",
                    "to": "sent",
                    "guard": "record.issued_on != nil",
                    "message": "Set issued_on before sending the invoice",
                },
                {
                    "from": "sent",
                    "to": "paid",
                    "roles": ["accountant"],
                    "actions": [
                        {
                            "type": "send_event",
                            "event": "invoice.paid",
                            "data": {"number": "{{ record.number }}"},
                        },
                        {"type": "webhook", "url": "https://hooks.example.com/paid"},
                        {
                            "type": "create_record",
                            "entity": "tag",
                            "data": {"label": "{{ 'paid ' + record.number }}"},
                        },
                    ],
                },
                {
                    "from": ["draft", "sent"],
                    "to": "void",
                    "actions": [{"type": "set_field", "field": "notes", "value": {"voided": True}}],
                },
            ],
        },
    }
    machine_id = (await app.ok("POST", "_admin/state-machines", machine, 201))["data"]["id"]
    invoice = (await app.ok("POST", "invoice", {"number": "INV-1"}, 201))["data"]
    assert invoice["status"] == "draft"
    status, payload = await app.call("PUT", f"invoice/{invoice['id']}", {"status": "paid"})
    assert status == 422
    assert details(payload)[0]["message"] == "Invalid transition from 'draft' to 'paid'"
    status, payload = await app.call("PUT", f"invoice/{invoice['id']}", {"status": "sent"})
    assert status == 422
    assert details(payload)[0]["message"] == "Set issued_on before sending the invoice"
    body = {"status": "sent", "issued_on": "2026-03-01"}
    assert (await app.ok("PUT", f"invoice/{invoice['id']}", body))["data"]["status"] == "sent"
    paid = (await app.ok("PUT", f"invoice/{invoice['id']}", {"status": "paid"}))["data"]
    assert paid["status"] == "paid"
    assert [(e.action, e.entity) for e in events] == [("invoice.paid", "invoice")]
    hooks = app_rows(pg_dsn, app, "select source, url from _webhook_logs")
    assert hooks == [{"source": "state_machine", "url": "https://hooks.example.com/paid"}]
    assert events[0].metadata["data"] == {"number": "INV-1"}
    assert [t["label"] for t in (await app.ok("GET", "tag"))["data"]] == ["paid INV-1"]

    other = (await app.ok("POST", "invoice", {"number": "INV-2"}, 201))["data"]
    voided = (await app.ok("PUT", f"invoice/{other['id']}", {"status": "void"}))["data"]
    assert voided["notes"] == {"voided": True}

    graph = (await app.ok("GET", f"_admin/state-machines/{machine_id}"))["data"]["graph"]
    assert [(e["from"], e["to"]) for e in graph["edges"]] == [
        ("draft", "sent"),
        ("sent", "paid"),
        ("draft", "void"),
        ("sent", "void"),
    ]
