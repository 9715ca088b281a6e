"""State-machine decisions without a database: initial state, transition lookup, roles, guards,
and errors collected over several machines."""

from __future__ import annotations

from typing import Any

import pytest

from rocketd.auth.principal import Principal
from rocketd.capabilities.state_machines.decide import apply_initial_states, decide, state_text
from rocketd.capabilities.state_machines.model import StateMachine, parse_state_machine
from rocketd.engine.record_state import RecordState
from rocketd.errors import Forbidden, ValidationFailed
from rocketd.metadata.model import Entity, Field, PrimaryKey

TICKET = Entity(
    "ticket",
    "tickets",
    PrimaryKey("id", "uuid", generated=True),
    (
        Field("id", "uuid"),
        Field("status", "string"),
        Field("priority", "string"),
        Field("resolution", "text"),
    ),
)
AGENT = Principal("u-agent", ("agent",))
GUEST = Principal("u-guest", ())
ADMIN = Principal("u-admin", ("admin",))


def machine(field: str = "status", initial: str | None = "open", **extra: Any) -> StateMachine:
    transitions = extra.pop(
        "transitions",
        [
            {"from": "open", "to": "assigned"},
            {
                "from": ["resolved", "on_hold"],
                "to": "closed",
                "roles": ["agent", "lead"],
                "guard": "record.resolution != nil",
            },
            {"from": "assigned", "to": "resolved", "guard": "record.nope.x", "message": "nope"},
        ],
    )
    definition: dict[str, Any] = {"transitions": transitions}
    if initial:
        definition["initial"] = initial
    return parse_state_machine({"entity": "ticket", "field": field, "definition": definition})


def update(values: dict[str, Any], old: dict[str, Any]) -> RecordState:
    return RecordState.for_write(TICKET, "update", values, old, AGENT)


def messages(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [d.message for d in exc.value.details]


def test_create_without_the_state_gets_the_initial_state() -> None:
    s = RecordState.for_write(TICKET, "create", {"resolution": "x"}, None, GUEST)
    decision = decide([machine()], s, GUEST)
    assert decision.initial == {"status": "open"} and decision.firings == []
    apply_initial_states(decision, s)
    assert s.assigned == {"status": "open"} and s.record["status"] == "open"


def test_create_with_another_state_is_rejected() -> None:
    s = RecordState.for_write(TICKET, "create", {"status": "closed"}, None, GUEST)
    with pytest.raises(ValidationFailed) as caught:
        decide([machine()], s, GUEST)
    assert [d.to_json() for d in caught.value.details] == [
        {
            "message": "Initial state must be 'open', got 'closed'",
            "field": "status",
            "rule": "state_machine",
        }
    ]
    no_initial = RecordState.for_write(TICKET, "create", {"status": "closed"}, None, GUEST)
    assert decide([machine(initial=None)], no_initial, GUEST).firings == []


def test_update_without_the_field_or_with_the_same_state_does_nothing() -> None:
    assert decide([machine()], update({"resolution": "x"}, {"status": "open"}), AGENT).firings == []
    assert decide([machine()], update({"status": "open"}, {"status": "open"}), AGENT).firings == []


def test_transition_found_from_string_or_array_from() -> None:
    (firing,) = decide(
        [machine()], update({"status": "assigned"}, {"status": "open"}), GUEST
    ).firings
    assert (firing.old, firing.new) == ("open", "assigned")
    s = update({"status": "closed"}, {"status": "on_hold", "resolution": "done"})
    (firing,) = decide([machine()], s, AGENT).firings
    assert firing.transition.sources == ("resolved", "on_hold")


def test_invalid_transition_and_null_stored_state() -> None:
    with pytest.raises(ValidationFailed) as caught:
        decide([machine()], update({"status": "closed"}, {"status": "open"}), AGENT)
    assert messages(caught) == ["Invalid transition from 'open' to 'closed'"]
    with pytest.raises(ValidationFailed) as caught:
        decide([machine()], update({"status": "assigned"}, {"status": None}), AGENT)
    assert messages(caught) == ["Invalid transition from '' to 'assigned'"]


def test_roles_are_enforced_and_admins_bypass_them() -> None:
    s = update({"status": "closed"}, {"status": "resolved", "resolution": "done"})
    with pytest.raises(Forbidden) as caught:
        decide([machine()], s, GUEST)
    assert caught.value.message == (
        "Transition from 'resolved' to 'closed' requires one of roles: agent, lead"
    )
    assert decide([machine()], s, ADMIN).firings


def test_guard_blocks_with_the_spec_message_or_the_transitions_own() -> None:
    s = update({"status": "closed"}, {"status": "resolved", "resolution": None})
    with pytest.raises(ValidationFailed) as caught:
        decide([machine()], s, AGENT)
    assert messages(caught) == ["Transition from 'resolved' to 'closed' blocked by guard"]
    custom = machine(
        transitions=[
            {"from": "a", "to": "b", "guard": "record.resolution != nil", "message": "Say why"}
        ]
    )
    with pytest.raises(ValidationFailed) as caught:
        decide([custom], update({"status": "b"}, {"status": "a"}), AGENT)
    assert messages(caught) == ["Say why"]


def test_guard_sees_action_update_and_the_merged_record() -> None:
    guarded = machine(
        transitions=[
            {"from": "a", "to": "b", "guard": "action == 'update' && record.priority == 'high'"}
        ]
    )
    assert decide([guarded], update({"status": "b"}, {"status": "a", "priority": "high"}), GUEST)


def test_errors_of_every_machine_are_collected() -> None:
    first = machine()
    second = machine(field="priority", initial=None, transitions=[{"from": "low", "to": "high"}])
    s = update({"status": "closed", "priority": "urgent"}, {"status": "open", "priority": "low"})
    with pytest.raises(ValidationFailed) as caught:
        decide([first, second], s, AGENT)
    assert [(d.field, d.message) for d in caught.value.details] == [
        ("status", "Invalid transition from 'open' to 'closed'"),
        ("priority", "Invalid transition from 'low' to 'urgent'"),
    ]


def test_state_text() -> None:
    assert [state_text(v) for v in (None, "a", True, 2, 2.0, 2.5)] == [
        "",
        "a",
        "true",
        "2",
        "2",
        "2.5",
    ]
