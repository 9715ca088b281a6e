"""Permission policies without a database: parsing admin bodies and stored rows, the operator
table on records, the SQL row filters (text and parameters), grants and scopes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from rocketd.auth.principal import Principal
from rocketd.capabilities.permissions.access import Access, PermissionSet, holds
from rocketd.capabilities.permissions.model import (
    NEVER,
    Condition,
    Policy,
    PolicyFields,
    parse_policy_body,
    policy_from_row,
)
from rocketd.errors import Forbidden, InvalidPayload, ValidationFailed
from rocketd.metadata.parse import parse_entity

TICKET = parse_entity(
    {
        "name": "ticket",
        "table": "tickets",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [
            {"name": "id", "type": "uuid"},
            {"name": "status", "type": "string"},
            {"name": "owner_id", "type": "uuid"},
            {"name": "priority", "type": "int"},
            {"name": "meta", "type": "json"},
        ],
    }
)
USER = str(uuid.uuid4())


def policy(action: str, roles: list[str], conditions: Any = (), check: Any = ()) -> Policy:
    return Policy(
        str(uuid.uuid4()), "ticket", action, tuple(roles), tuple(conditions), tuple(check)
    )


def access(roles: list[str], *policies: Policy) -> Access:
    return Access(PermissionSet.build(policies), Principal(USER, tuple(roles)))


# --- admin bodies ----------------------------------------------------------------------------------


def test_parse_defaults_and_normalises() -> None:
    got = parse_policy_body({"entity": "ticket", "action": "read"})
    assert got == PolicyFields("ticket", "read")
    got = parse_policy_body(
        {
            "entity": "ticket",
            "action": "update",
            "roles": ["a", "a", "B"],
            "conditions": [{"field": "status", "operator": "in", "value": ["x", 1, True]}],
            "check": None,
        }
    )
    assert got.roles == ("a", "B")
    assert got.conditions == (Condition("status", "in", ("x", 1, True)),)
    assert got.check == ()


def test_parse_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_policy_body(
            {
                "action": "write",
                "conditions": [
                    {"field": "", "operator": "eq", "value": 1},
                    {"field": "a", "operator": "between", "value": 1},
                ],
            }
        )
    fields = [d.field for d in err.value.details]
    assert fields == ["entity", "action", "conditions[0].field", "conditions[1].operator"]
    assert err.value.message.startswith("entity is required; action must be read, create")


@pytest.mark.parametrize(
    "body",
    [
        {"entity": 1, "action": "read"},
        {"entity": "t", "action": "read", "roles": [None]},
        {"entity": "t", "action": "read", "conditions": "x"},
        {"entity": "t", "action": "read", "extra": 1},
    ],
)
def test_parse_wrong_types_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        parse_policy_body(body)


def test_put_keeps_stored_values() -> None:
    stored = PolicyFields("ticket", "read", ("a",), (Condition("status", "eq", "x"),))
    assert parse_policy_body({}, stored) == stored
    assert parse_policy_body({"roles": []}, stored).conditions == stored.conditions
    with pytest.raises(ValidationFailed):
        parse_policy_body({"entity": None}, stored)


def test_stored_rows_fail_closed() -> None:
    p = policy_from_row(1, "ticket", "read", ["a"], [{"field": "s", "operator": "like"}], None)
    assert p is not None and p.conditions == (NEVER,) and p.check == ()
    p = policy_from_row(1, "ticket", "read", None, "garbage", [{"field": "s"}])
    assert p is not None and p.conditions == (NEVER,) and p.check == (NEVER,)
    p = policy_from_row(1, "ticket", "read", ["a"], None, None)
    assert p is not None and p.conditions == ()
    assert policy_from_row(1, "ticket", "write", ["a"], [], []) is None


# --- the operator table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_value", "operator", "value", "expected"),
    [
        ("open", "eq", "open", True),
        ("open", "neq", "open", False),
        (5, "eq", "5", True),
        (5.0, "eq", 5, True),
        (True, "eq", "true", True),
        ("draft", "in", ("draft", "sent"), True),
        ("paid", "in", ("draft", "sent"), False),
        ("paid", "not_in", ("draft", "sent"), True),
        (2, "in", (1, 2), True),
        ("10", "gt", 9, True),
        ("abc", "gt", -1, True),  # non-numeric counts as 0
        ("abc", "lt", 1, True),
        (3, "gte", 3, True),
        (3, "lte", 2, False),
        ("x", "like", "x", False),  # unknown operators never hold
        ("x", "in", "x", False),  # in needs a list
        (None, "neq", "x", False),  # NULL never holds
        (None, "eq", "", False),
        (USER, "eq", "$user.id", True),
        (USER, "in", ("$user.id",), True),
        ("someone", "eq", "$user.id", False),
    ],
)
def test_operator_table(record_value: Any, operator: str, value: Any, expected: bool) -> None:
    condition = Condition("f", operator, value)
    assert holds(condition, {"f": record_value}, USER) is expected


def test_missing_field_does_not_hold() -> None:
    assert holds(Condition("f", "neq", "x"), {"g": 1}, USER) is False
    assert holds(NEVER, {"": 1}, USER) is False


# --- grants and row filters ------------------------------------------------------------------------


def test_grant_messages_and_bypass() -> None:
    with pytest.raises(Forbidden, match="No permission for read on ticket"):
        access(["a"]).grant("ticket", "read")
    with pytest.raises(Forbidden, match="Permission denied for read on ticket"):
        access(["a"], policy("read", ["b"])).grant("ticket", "read")
    assert access(["A"], policy("read", ["a"])).grant("ticket", "read").policies
    admin = access(["admin"])
    assert admin.grant("ticket", "delete").bypass
    assert admin.read_filter(admin.grant("ticket", "read"), TICKET) is None


def render(where: Any) -> str:
    return str(where.as_string(None))


def test_row_filter_ors_policies_and_ands_conditions() -> None:
    a = access(
        ["x", "y"],
        policy("read", ["x"], [Condition("status", "eq", "open"), Condition("priority", "gte", 3)]),
        policy("read", ["y"], [Condition("owner_id", "eq", "$user.id")]),
        policy("read", ["z"]),  # not the caller's: does not lift the filter
    )
    row_filter = a.read_filter(a.grant("ticket", "read"), TICKET)
    assert row_filter is not None
    where, params = row_filter
    assert render(where) == '("status" = %s AND "priority" >= %s) OR ("owner_id" = %s)'
    assert params == ["open", 3, uuid.UUID(USER)]
    qualified, _ = a.read_filter(a.grant("ticket", "read"), TICKET, "_t") or (None, None)
    assert '"_t"."status" = %s' in render(qualified)


def test_row_filter_fails_closed() -> None:
    a = access(
        ["x"],
        policy(
            "read",
            ["x"],
            [
                Condition("nope", "eq", 1),
                Condition("priority", "eq", "abc"),
                Condition("priority", "neq", "abc"),
                Condition("priority", "in", ("abc", 2)),
                Condition("priority", "not_in", ("abc",)),
                Condition("status", "in", ()),
                Condition("meta", "eq", "x"),
                Condition("status", "like", "x"),
            ],
        ),
    )
    where, params = a.read_filter(a.grant("ticket", "read"), TICKET) or (None, None)
    assert render(where) == (
        '(FALSE AND FALSE AND "priority" IS NOT NULL AND "priority" = ANY(%s)'
        ' AND "priority" IS NOT NULL AND FALSE AND FALSE AND FALSE)'
    )
    assert params == [[2]]


def test_placeholder_that_is_not_a_value_of_the_field_matches_nothing() -> None:
    a = Access(
        PermissionSet.build([policy("read", ["x"], [Condition("priority", "eq", "$user.id")])]),
        Principal("not-a-number", ("x",)),
    )
    where, params = a.read_filter(a.grant("ticket", "read"), TICKET) or (None, None)
    assert render(where) == "(FALSE)" and params == []


def test_unconditional_policy_means_no_filter() -> None:
    a = access(
        ["x"], policy("read", ["x"], [Condition("status", "eq", "a")]), policy("read", ["x"])
    )
    assert a.read_filter(a.grant("ticket", "read"), TICKET) is None


def test_write_scopes() -> None:
    own = Condition("owner_id", "eq", "$user.id")
    a = access(
        ["x"],
        policy("update", ["x"], [Condition("status", "eq", "open")], [own]),
        policy("create", ["x"], check=[own]),
    )
    grant = a.grant("ticket", "update")
    stored = {"id": uuid.uuid4(), "status": "open", "owner_id": uuid.UUID(USER), "priority": 1}
    scope = a.stored_scope(grant, TICKET, stored)
    assert scope is not None
    a.check_result(scope, "update", TICKET, {"owner_id": USER})
    with pytest.raises(Forbidden, match="Permission denied for update on ticket"):
        a.check_result(scope, "update", TICKET, {"owner_id": str(uuid.uuid4())})
    with pytest.raises(Forbidden):
        a.stored_scope(grant, TICKET, {**stored, "status": "closed"})
    create = a.create_scope(a.grant("ticket", "create"))
    with pytest.raises(Forbidden, match="create"):
        a.check_result(create, "create", TICKET, {"owner_id": None})
