"""Permission policies: the admin API, and enforcement in the five data operations (whitelist,
admin bypass, row filters on list/count/get/includes, write conditions on the stored row, the
`check` list on the resulting row, nested children, the caller placeholder)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg
import pytest

from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for, wait_for_lock_waiter
from tests.support.helpers import error_of
from tests.support.perms import HELPDESK, cond, grant, raw, subject, user_client

ROW_KEYS = {"id", "entity", "action", "roles", "conditions", "check", "created_at", "updated_at"}


@pytest.fixture
async def desk(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema(HELPDESK)
    return app


async def ticket(app: AppClient, title: str, **extra: Any) -> dict[str, Any]:
    return dict((await app.ok("POST", "ticket", {"title": title, **extra}, 201))["data"])


def forbidden(message: str) -> dict[str, Any]:
    return {"error": {"code": "FORBIDDEN", "message": message}}


# --- admin API ------------------------------------------------------------------------------------


async def test_admin_crud(desk: AppClient) -> None:
    made = (
        await desk.ok(
            "POST",
            "_admin/permissions",
            {"entity": "ticket", "action": "update", "roles": ["agent"]},
            201,
        )
    )["data"]
    assert set(made) == ROW_KEYS
    assert made["conditions"] == [] and made["check"] == []
    second = await grant(
        desk, "invoice", "read", ["x"], [cond("status", "in", ["draft", "sent"])]
    )  # the entity is not checked to exist (spec)
    third = await grant(desk, "ticket", "create", [])
    listed = (await desk.ok("GET", "_admin/permissions"))["data"]
    assert [(p["entity"], p["action"]) for p in listed] == [
        ("invoice", "read"),
        ("ticket", "create"),
        ("ticket", "update"),
    ]
    assert (await desk.ok("GET", f"_admin/permissions/{second['id']}"))["data"] == second
    assert second["conditions"] == [
        {"field": "status", "operator": "in", "value": ["draft", "sent"]}
    ]

    # PUT keeps what it does not send (C28).
    put = (
        await desk.ok(
            "PUT",
            f"_admin/permissions/{second['id']}",
            {"roles": ["y"], "check": [cond("status", "eq", "draft")]},
        )
    )["data"]
    assert put["entity"] == "invoice" and put["action"] == "read" and put["roles"] == ["y"]
    assert put["conditions"] == second["conditions"]
    assert put["check"] == [{"field": "status", "operator": "eq", "value": "draft"}]
    put = (await desk.ok("PUT", f"_admin/permissions/{second['id']}", put))["data"]  # echo
    assert put["roles"] == ["y"]

    assert await desk.ok("DELETE", f"_admin/permissions/{third['id']}") == {
        "data": {"id": third["id"], "deleted": True}
    }
    for method in ("GET", "PUT", "DELETE"):
        status, body = await desk.call(method, f"_admin/permissions/{third['id']}", {})
        assert status == 404
        assert body["error"] == {
            "code": "NOT_FOUND",
            "message": f"Permission not found: {third['id']}",
        }
    status, _ = await desk.call("GET", "_admin/permissions/nope")
    assert status == 404


async def test_admin_validation(desk: AppClient) -> None:
    ok = {"entity": "ticket", "action": "read"}
    cases: list[tuple[Any, int, str]] = [
        ({"action": "read"}, 422, "entity is required"),
        ({"entity": "", "action": "read"}, 422, "entity is required"),
        ({"entity": "ticket"}, 422, "action is required"),
        (
            {"entity": "ticket", "action": "write"},
            422,
            "action must be read, create, update, or delete",
        ),
        ({"entity": "Ticket;drop", "action": "read"}, 422, "entity must match"),
        (
            {**ok, "conditions": [cond("status", "like", "x")]},
            422,
            "conditions[0].operator must be one of",
        ),
        (
            {**ok, "conditions": [cond("status", "in", "x")]},
            422,
            "conditions[0].value must be an array",
        ),
        (
            {**ok, "conditions": [cond("Bad Field", "eq", "x")]},
            422,
            "conditions[0].field must match",
        ),
        (
            {**ok, "conditions": [cond('a"; drop', "eq", "x")]},
            422,
            "conditions[0].field must match",
        ),
        (
            {**ok, "conditions": [cond("status", "eq", None)]},
            422,
            "conditions[0].value is required",
        ),
        (
            {**ok, "conditions": [cond("status", "eq", {"a": 1})]},
            422,
            "conditions[0].value must be a string",
        ),
        (
            {**ok, "conditions": [cond("status", "eq", "x" * 2000)]},
            422,
            "conditions[0].value must be at most",
        ),
        (
            {**ok, "conditions": [{"field": "status", "operator": "eq", "value": 1, "x": 1}]},
            422,
            "conditions[0].x is not",
        ),
        ({**ok, "conditions": [cond("s", "eq", 1)] * 51}, 422, "conditions may hold at most 50"),
        (
            {**ok, "check": [cond("status", "in", list(range(1001)))]},
            422,
            "check[0].value may hold at most",
        ),
        ({**ok, "roles": [""]}, 422, "roles[0] must not be blank"),
        ({"entity": 1, "action": "read"}, 400, "Invalid JSON body"),
        ({**ok, "roles": "admin"}, 400, "Invalid JSON body"),
        ({**ok, "conditions": {"field": "x"}}, 400, "Invalid JSON body"),
        ({**ok, "conditions": ["x"]}, 400, "Invalid JSON body"),
        ({**ok, "priority": 1}, 400, "Invalid JSON body"),
    ]
    for body, status, message in cases:
        got, payload = await desk.call("POST", "_admin/permissions", body)
        assert got == status, (body, payload)
        err = payload["error"]
        assert err["code"] == ("VALIDATION_FAILED" if status == 422 else "INVALID_PAYLOAD")
        assert err["message"].startswith(message), (body, err)
    made = await grant(desk, "ticket", "read", ["r"])
    put_cases: list[tuple[Any, int, str]] = [
        ({"entity": ""}, 422, "entity is required"),
        ({"action": None}, 422, "action is required"),
        ({"action": "write"}, 422, "action must be read, create, update, or delete"),
        ({"conditions": [cond("x", "regex", ".*")]}, 422, "conditions[0].operator"),
        ({"conditions": "x"}, 400, "Invalid JSON body"),
        ({"id": str(uuid.uuid4()), "bogus": 1}, 400, "Invalid JSON body"),
    ]
    for body, status, message in put_cases:
        got, payload = await desk.call("PUT", f"_admin/permissions/{made['id']}", body)
        assert got == status, (body, payload)
        assert payload["error"]["message"].startswith(message), payload
    assert (await desk.ok("GET", f"_admin/permissions/{made['id']}"))["data"] == made
    for data in (b"{", b"[]", b"", b"3"):
        resp = await raw(desk, "POST", "_admin/permissions", data)
        assert resp.status == 400
        assert (await error_of(resp))["message"] == "Invalid JSON body"
    resp = await raw(
        desk, "POST", "_admin/permissions", json.dumps({**ok, "roles": ["r" * 90] * 1000}).encode()
    )
    assert resp.status == 413
    listed = (await desk.ok("GET", "_admin/permissions"))["data"]
    assert [p["id"] for p in listed] == [made["id"]]


# --- whitelist and bypass --------------------------------------------------------------------------


async def test_no_policy_is_403_everywhere_and_admin_bypasses(desk: AppClient) -> None:
    t = await ticket(desk, "one")  # the seeded admin needs no policy
    clerk = await user_client(desk, "clerk@x.io", ["clerk"])
    calls = [
        ("GET", "ticket", None, "read"),
        ("GET", f"ticket/{t['id']}", None, "read"),
        ("POST", "ticket", {"title": "x"}, "create"),
        ("PUT", f"ticket/{t['id']}", {"title": "x"}, "update"),
        ("DELETE", f"ticket/{t['id']}", None, "delete"),
    ]
    for method, path, body, action in calls:
        status, payload = await clerk.call(method, path, body)
        assert status == 403, (method, path)
        assert payload == forbidden(f"No permission for {action} on ticket")
    for action in ("read", "create", "update", "delete"):
        await grant(desk, "ticket", action, ["someone_else"])
    for method, path, body, action in calls:
        status, payload = await clerk.call(method, path, body)
        assert status == 403
        assert payload == forbidden(f"Permission denied for {action} on ticket")
    # A missing id is still 403 for a caller without any grant (existence is not revealed).
    status, _ = await clerk.call("GET", f"ticket/{uuid.uuid4()}")
    assert status == 403
    assert (await desk.ok("GET", f"ticket/{t['id']}"))["data"]["title"] == "one"


async def test_roles_match_case_insensitively(desk: AppClient) -> None:
    await ticket(desk, "one")
    await grant(desk, "ticket", "read", ["Agent"])
    agent = await user_client(desk, "agent@x.io", ["aGENT"])
    assert len((await agent.ok("GET", "ticket"))["data"]) == 1


# --- row filters -----------------------------------------------------------------------------------


async def test_row_filter_on_list_count_get(desk: AppClient) -> None:
    fin = [await ticket(desk, f"f{i}", department="finance") for i in range(3)]
    ops = [await ticket(desk, f"o{i}", department="ops", priority=9) for i in range(2)]
    await ticket(desk, "nodept")
    await grant(desk, "ticket", "read", ["accountant"], [cond("department", "eq", "finance")])
    acc = await user_client(desk, "acc@x.io", ["accountant"])
    page = await acc.ok("GET", "ticket?per_page=2")
    assert page["meta"]["total"] == 3
    assert {r["department"] for r in page["data"]} == {"finance"}
    page = await acc.ok("GET", "ticket?page=9")
    assert page["meta"]["total"] == 3 and page["data"] == []
    assert (await acc.ok("GET", f"ticket/{fin[0]['id']}"))["data"]["id"] == fin[0]["id"]
    status, body = await acc.call("GET", f"ticket/{ops[0]['id']}")
    assert status == 404
    assert body["error"] == {
        "code": "NOT_FOUND",
        "message": f"ticket with id {ops[0]['id']} not found",
    }
    # Client filters narrow further, never widen.
    page = await acc.ok("GET", "ticket?filter[department]=ops")
    assert page["data"] == [] and page["meta"]["total"] == 0


async def test_policies_are_ored(desk: AppClient) -> None:
    await ticket(desk, "fin-low", department="finance", priority=1)
    await ticket(desk, "ops-high", department="ops", priority=9)
    await ticket(desk, "ops-low", department="ops", priority=1)
    await grant(desk, "ticket", "read", ["accountant"], [cond("department", "eq", "finance")])
    await grant(
        desk,
        "ticket",
        "read",
        ["oncall"],
        [cond("priority", "gte", 5), cond("status", "in", ["open", "pending"])],
    )
    both = await user_client(desk, "both@x.io", ["accountant", "oncall"])
    titles = sorted(r["title"] for r in (await both.ok("GET", "ticket"))["data"])
    assert titles == ["fin-low", "ops-high"]
    # A matching policy without conditions lifts the filter.
    await grant(desk, "ticket", "read", ["oncall"])
    titles = sorted(r["title"] for r in (await both.ok("GET", "ticket"))["data"])
    assert titles == ["fin-low", "ops-high", "ops-low"]


async def test_own_rows_with_the_caller_placeholder(desk: AppClient) -> None:
    await grant(desk, "ticket", "read", ["customer"], [cond("owner_id", "eq", "$user.id")])
    ann = await user_client(desk, "ann@x.io", ["customer"])
    bob = await user_client(desk, "bob@x.io", ["customer"])
    a = await ticket(desk, "ann's", owner_id=subject(ann.token))
    b = await ticket(desk, "bob's", owner_id=subject(bob.token))
    assert [r["id"] for r in (await ann.ok("GET", "ticket"))["data"]] == [a["id"]]
    assert [r["id"] for r in (await bob.ok("GET", "ticket"))["data"]] == [b["id"]]
    status, _ = await ann.call("GET", f"ticket/{b['id']}")
    assert status == 404
    # In lists too.
    await grant(desk, "ticket", "read", ["lead"], [cond("owner_id", "in", ["$user.id"])])
    lead = await user_client(desk, "lead@x.io", ["lead"])
    assert (await lead.ok("GET", "ticket"))["data"] == []


async def test_conditions_on_unknown_fields_or_bad_values_match_nothing(desk: AppClient) -> None:
    await ticket(desk, "one", priority=3)
    await grant(desk, "ticket", "read", ["a"], [cond("no_such_field", "eq", "x")])
    await grant(desk, "ticket", "read", ["b"], [cond("priority", "eq", "not a number")])
    await grant(desk, "ticket", "read", ["c"], [cond("priority", "neq", "not a number")])
    await grant(desk, "ticket", "read", ["d"], [cond("owner_id", "eq", "$user.id")])
    for role, expected in (("a", 0), ("b", 0), ("c", 1), ("d", 0)):
        user = await user_client(desk, f"{role}@x.io", [role])
        page = await user.ok("GET", "ticket")
        assert page["meta"]["total"] == expected, role


async def test_includes_are_filtered_per_entity(desk: AppClient) -> None:
    await grant(desk, "ticket", "read", ["agent"])
    await grant(desk, "note", "read", ["agent"], [cond("author_id", "eq", "$user.id")])
    await grant(desk, "label", "read", ["agent"], [cond("team", "eq", "support")])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    me = subject(agent.token)
    sup = (await desk.ok("POST", "label", {"name": "sup", "team": "support"}, 201))["data"]
    sales = (await desk.ok("POST", "label", {"name": "sales", "team": "sales"}, 201))["data"]
    t = (
        await desk.ok(
            "POST",
            "ticket",
            {
                "title": "t",
                "notes": {"data": [{"body": "mine", "author_id": me}, {"body": "theirs"}]},
                "labels": {"data": [{"id": sup["id"]}, {"id": sales["id"]}]},
            },
            201,
        )
    )["data"]
    got = (await agent.ok("GET", f"ticket/{t['id']}?include=notes,labels"))["data"]
    assert [n["body"] for n in got["notes"]] == ["mine"]
    assert [label["name"] for label in got["labels"]] == ["sup"]
    page = await agent.ok("GET", "ticket?include=notes,labels")
    assert [n["body"] for n in page["data"][0]["notes"]] == ["mine"]
    assert [label["name"] for label in page["data"][0]["labels"]] == ["sup"]
    # Reverse include: the note's ticket, under the ticket's read filter.
    await grant(desk, "ticket", "read", ["reader"], [cond("status", "eq", "closed")])
    await grant(desk, "note", "read", ["reader"])
    reader = await user_client(desk, "reader@x.io", ["reader"])
    notes = (await reader.ok("GET", "note?include=ticket"))["data"]
    assert len(notes) == 2 and all(n["ticket"] is None for n in notes)


async def test_include_of_an_entity_the_caller_cannot_read_is_403(desk: AppClient) -> None:
    await grant(desk, "ticket", "read", ["agent"])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    t = await ticket(desk, "t")
    status, body = await agent.call("GET", f"ticket/{t['id']}?include=notes")
    assert status == 403
    assert body == forbidden("No permission for read on note")
    status, body = await agent.call("GET", "ticket?include=labels")
    assert status == 403


# --- writes -----------------------------------------------------------------------------------------


async def test_update_conditions_hold_on_the_stored_row(desk: AppClient) -> None:
    await grant(desk, "ticket", "update", ["agent"], [cond("status", "in", ["open", "pending"])])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    open_t = await ticket(desk, "open")
    closed = await ticket(desk, "closed", status="closed")
    # Resolving an open ticket is allowed: the stored row is what counts (spec).
    got = (await agent.ok("PUT", f"ticket/{open_t['id']}", {"status": "closed"}))["data"]
    assert got["status"] == "closed"
    status, body = await agent.call("PUT", f"ticket/{closed['id']}", {"title": "x"})
    assert status == 403
    assert body == forbidden("Permission denied for update on ticket")
    status, body = await agent.call("PUT", f"ticket/{uuid.uuid4()}", {"title": "x"})
    assert status == 404


async def test_check_keeps_rows_in_the_callers_scope(desk: AppClient) -> None:
    own = [cond("owner_id", "eq", "$user.id")]
    await grant(desk, "ticket", "create", ["customer"], check=own)
    await grant(desk, "ticket", "update", ["customer"], own, own)
    await grant(desk, "ticket", "read", ["customer"], own)
    ann = await user_client(desk, "ann@x.io", ["customer"])
    me = subject(ann.token)
    other = str(uuid.uuid4())
    status, body = await ann.call("POST", "ticket", {"title": "for someone", "owner_id": other})
    assert status == 403
    assert body == forbidden("Permission denied for create on ticket")
    mine = (await ann.ok("POST", "ticket", {"title": "mine", "owner_id": me}, 201))["data"]
    status, body = await ann.call("PUT", f"ticket/{mine['id']}", {"owner_id": other})
    assert status == 403
    assert body == forbidden("Permission denied for update on ticket")
    stored = (await desk.ok("GET", f"ticket/{mine['id']}"))["data"]
    assert stored["owner_id"] == me  # rolled back
    titles = [r["title"] for r in (await desk.ok("GET", "ticket"))["data"]]
    assert titles == ["mine"]  # the refused create left nothing
    await ann.ok("PUT", f"ticket/{mine['id']}", {"title": "renamed"})


async def test_delete_conditions(desk: AppClient) -> None:
    await grant(desk, "ticket", "delete", ["agent"], [cond("status", "eq", "closed")])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    open_t = await ticket(desk, "open")
    closed = await ticket(desk, "closed", status="closed")
    status, body = await agent.call("DELETE", f"ticket/{open_t['id']}")
    assert status == 403
    assert body == forbidden("Permission denied for delete on ticket")
    await agent.ok("DELETE", f"ticket/{closed['id']}")
    await desk.ok("GET", f"ticket/{open_t['id']}")


async def test_nested_children_need_their_own_permission(desk: AppClient) -> None:
    await grant(desk, "ticket", "create", ["agent"])
    await grant(desk, "ticket", "update", ["agent"])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    body = {"title": "t", "notes": {"data": [{"body": "n"}]}}
    status, payload = await agent.call("POST", "ticket", body)
    assert status == 403
    assert payload == forbidden("No permission for create on note")
    assert (await desk.ok("GET", "ticket"))["meta"]["total"] == 0  # rolled back
    await grant(desk, "note", "create", ["agent"], check=[cond("author_id", "eq", "$user.id")])
    status, payload = await agent.call("POST", "ticket", body)
    assert status == 403
    assert payload == forbidden("Permission denied for create on note")
    me = subject(agent.token)
    body = {"title": "t", "notes": {"data": [{"body": "n", "author_id": me}]}}
    t = (await agent.ok("POST", "ticket", body, 201))["data"]
    assert (await desk.ok("GET", "note"))["meta"]["total"] == 1

    # Updating or deleting a child needs update / delete on note, with conditions on its row.
    theirs = (await desk.ok("POST", "note", {"ticket_id": t["id"], "body": "theirs"}, 201))["data"]
    upd = {"notes": {"data": [{"id": theirs["id"], "body": "hijacked"}]}}
    status, payload = await agent.call("PUT", f"ticket/{t['id']}", upd)
    assert payload == forbidden("No permission for update on note"), payload
    await grant(desk, "note", "update", ["agent"], [cond("author_id", "eq", "$user.id")])
    status, payload = await agent.call("PUT", f"ticket/{t['id']}", upd)
    assert payload == forbidden("Permission denied for update on note")
    assert (await desk.ok("GET", f"note/{theirs['id']}"))["data"]["body"] == "theirs"
    replace = {"notes": {"_write_mode": "replace", "data": []}}
    status, payload = await agent.call("PUT", f"ticket/{t['id']}", replace)
    assert payload == forbidden("No permission for delete on note")
    assert (await desk.ok("GET", "note"))["meta"]["total"] == 2

    # Many-to-many links need read on the linked entity.
    label = (await desk.ok("POST", "label", {"name": "l"}, 201))["data"]
    link = {"labels": {"data": [{"id": label["id"]}]}}
    status, payload = await agent.call("PUT", f"ticket/{t['id']}", link)
    assert payload == forbidden("No permission for read on label")
    await grant(desk, "label", "read", ["agent"])
    await agent.ok("PUT", f"ticket/{t['id']}", link)


async def test_write_conditions_see_the_row_locked_in_the_transaction(
    desk: AppClient, pg_dsn: str
) -> None:
    """A concurrent change committed while the update waits for the row lock is what the
    conditions are checked against: a ticket closed meanwhile cannot be edited."""
    await grant(desk, "ticket", "update", ["agent"], [cond("status", "eq", "open")])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    t = await ticket(desk, "race")
    conn = await psycopg.AsyncConnection.connect(dsn_for(pg_dsn, f"rocket_{desk.name}"))
    try:
        await conn.execute("update tickets set status = 'closed' where id = %s", (t["id"],))
        request = asyncio.ensure_future(agent.call("PUT", f"ticket/{t['id']}", {"title": "x"}))
        await wait_for_lock_waiter(dsn_for(pg_dsn, f"rocket_{desk.name}"), conn.info.backend_pid)
        assert not request.done()  # waiting for the lock
        await conn.commit()
        status, body = await request
    finally:
        await conn.close()
    assert status == 403
    assert body == forbidden("Permission denied for update on ticket")
    assert (await desk.ok("GET", f"ticket/{t['id']}"))["data"]["title"] == "race"


async def test_permission_changes_apply_to_the_next_request(desk: AppClient) -> None:
    await ticket(desk, "one")
    agent = await user_client(desk, "agent@x.io", ["agent"])
    status, _ = await agent.call("GET", "ticket")
    assert status == 403
    made = await grant(desk, "ticket", "read", ["agent"])
    await agent.ok("GET", "ticket")
    await desk.ok("PUT", f"_admin/permissions/{made['id']}", {"roles": ["nobody"]})
    status, _ = await agent.call("GET", "ticket")
    assert status == 403
    await desk.ok("PUT", f"_admin/permissions/{made['id']}", {"roles": ["agent"]})
    await desk.ok("DELETE", f"_admin/permissions/{made['id']}")
    status, body = await agent.call("GET", "ticket")
    assert body == forbidden("No permission for read on ticket")
