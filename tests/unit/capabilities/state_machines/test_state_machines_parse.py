"""Parsing and validating state machines without a database: transitions, duplicates, enum
states, guards, actions, and the admin UI's graph."""

from __future__ import annotations

from typing import Any

import pytest

from rocketd.capabilities.state_machines.model import (
    MachineBook,
    parse_state_machine,
    state_machine_problems_in,
)
from rocketd.errors import InvalidPayload, ValidationFailed
from rocketd.metadata.model import Entity, Field, PrimaryKey
from rocketd.metadata.registry import Registry

PK = PrimaryKey("id", "uuid", generated=True)
TICKET = Entity(
    "ticket",
    "tickets",
    PK,
    (
        Field("id", "uuid"),
        Field("status", "string", enum=("open", "assigned", "resolved", "on_hold", "closed")),
        Field("stage", "string"),
        Field("resolution", "text"),
        Field("closed_at", "timestamp"),
        Field("meta", "json"),
        Field("updated_at", "timestamp", auto="update"),
    ),
)
AUDIT = Entity("audit", "audits", PK, (Field("id", "uuid"), Field("note", "string", required=True)))
REGISTRY = Registry({"ticket": TICKET, "audit": AUDIT}, {})

SPEC_EXAMPLE: dict[str, Any] = {
    "entity": "ticket",
    "field": "status",
    "active": True,
    "definition": {
        "initial": "open",
        "transitions": [
            {"from": "open", "to": "assigned"},
            {
                "from": ["resolved", "on_hold"],
                "to": "closed",
                "roles": ["agent"],
                "guard": "record.resolution != nil",
                "actions": [{"type": "set_field", "field": "closed_at", "value": "now"}],
            },
        ],
    },
}


def machine(
    *transitions: dict[str, Any], initial: str | None = "open", **extra: Any
) -> dict[str, Any]:
    definition: dict[str, Any] = {"transitions": list(transitions)}
    if initial is not None:
        definition["initial"] = initial
    return {"entity": "ticket", "field": "status", "definition": definition, **extra}


def problems_of(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_state_machine(body)
    return [d.message for d in caught.value.details]


def context_problems(body: dict[str, Any]) -> list[str]:
    return [d.message for d in state_machine_problems_in(REGISTRY, parse_state_machine(body))]


def test_spec_example_parses_with_string_and_array_from() -> None:
    parsed = parse_state_machine(SPEC_EXAMPLE)
    assert parsed.initial == "open"
    first, second = parsed.transitions
    assert first.sources == ("open",)
    assert second.sources == ("resolved", "on_hold")
    assert second.roles == ("agent",)
    assert second.guard is not None
    assert [a.type for a in second.actions] == ["set_field"]
    assert parsed.transition("on_hold", "closed") is second
    assert parsed.transition("open", "closed") is None
    assert context_problems(SPEC_EXAMPLE) == []
    assert parsed.to_json() == SPEC_EXAMPLE


def test_required_keys_and_spec_messages() -> None:
    assert problems_of({"definition": {"transitions": []}}) == [
        "entity is required",
        "field is required",
        "at least one transition is required",
    ]


def test_duplicate_transitions_are_rejected() -> None:
    messages = problems_of(
        machine({"from": "open", "to": "assigned"}, {"from": ["on_hold", "open"], "to": "assigned"})
    )
    assert messages == [
        "duplicate transition from 'open' to 'assigned' (also definition.transitions[0])"
    ]


def test_malformed_transitions_are_rejected() -> None:
    messages = problems_of(
        machine(
            {"from": [], "to": "assigned"},
            {"from": "open"},
            {"from": "open", "to": "open"},
            {"from": "open", "to": "closed", "roles": "agent"},
            {"from": "open", "to": "on_hold", "guard": "record.x ==", "when": 1},
            "open->closed",
        )
    )
    assert messages[0] == (
        "definition.transitions[0].from must be a state name or a non-empty list of state names"
    )
    assert "definition.transitions[1].to must be a state name" in messages
    assert any("never applies" in m for m in messages)
    assert "definition.transitions[3].roles must be a list of role names" in messages
    assert any(m.startswith("invalid expression: ") for m in messages)
    assert any(m.startswith('unknown key "when" in a transition') for m in messages)
    assert "definition.transitions[5] must be an object with from and to" in messages


def test_bad_actions_are_rejected() -> None:
    messages = problems_of(
        machine(
            {
                "from": "open",
                "to": "closed",
                "actions": [
                    {"type": "email"},
                    {"type": "set_field", "field": "closed_at"},
                    {"type": "webhook", "url": "ftp://x", "method": "BREW"},
                    {"type": "send_event"},
                    {"type": "create_record", "data": {"note": "{{ record. }}"}},
                ],
            }
        )
    )
    assert messages[0].startswith("invalid action type: email")
    assert 'definition.transitions[0].actions[1].value is required ("now" for the time)' in messages
    assert any("must be an http:// or https:// URL" in m for m in messages)
    assert any(".method must be one of" in m for m in messages)
    assert any(".event is required" in m for m in messages)
    assert any(".entity is required" in m for m in messages)
    assert any(m.startswith("invalid expression: ") for m in messages)


def test_machine_on_unknown_field_or_entity_is_rejected() -> None:
    assert context_problems({**machine({"from": "open", "to": "closed"}), "field": "phase"}) == [
        "field not found: ticket.phase"
    ]
    assert context_problems({**machine({"from": "a", "to": "b"}), "entity": "ghost"}) == [
        "entity not found: ghost"
    ]


def test_states_must_come_from_the_enum() -> None:
    messages = context_problems(machine({"from": ["open", "pending"], "to": "done"}, initial="new"))
    assert messages == [
        "state 'new' is not in the enum of ticket.status (open, assigned, resolved, on_hold,"
        " closed)",
        "state 'pending' is not in the enum of ticket.status (open, assigned, resolved,"
        " on_hold, closed)",
        "state 'done' is not in the enum of ticket.status (open, assigned, resolved, on_hold,"
        " closed)",
    ]
    free = {**machine({"from": "anything", "to": "else"}, initial="x"), "field": "stage"}
    assert context_problems(free) == []


def test_state_field_must_be_writable_and_not_json() -> None:
    assert context_problems({**machine({"from": "a", "to": "b"}, initial=None), "field": "meta"})
    assert context_problems({**machine({"from": "a", "to": "b"}, initial=None), "field": "id"})


def test_actions_are_checked_against_the_entities() -> None:
    messages = context_problems(
        machine(
            {
                "from": "open",
                "to": "closed",
                "actions": [
                    {"type": "set_field", "field": "nope", "value": 1},
                    {"type": "set_field", "field": "updated_at", "value": "now"},
                    {"type": "set_field", "field": "closed_at", "value": "yesterday"},
                    {"type": "set_field", "field": "meta", "value": "now"},
                    {"type": "create_record", "entity": "ghost"},
                    {"type": "create_record", "entity": "audit", "data": {"x": 1, "note": 5}},
                    {
                        "type": "create_record",
                        "entity": "audit",
                        "values": {"note": "{{ old.status }}"},
                    },
                ],
            }
        )
    )
    assert messages == [
        "unknown field: ticket.nope",
        "ticket.updated_at is not writable (a primary key or auto field)",
        "ticket.closed_at must be an RFC 3339 timestamp (e.g. 2026-02-22T10:15:30Z)",
        '"now" cannot be stored in ticket.meta (json)',
        "entity not found: ghost",
        "unknown field: audit.x",
        "audit.note must be a string",
    ]


def test_wrong_json_types_at_top_level_are_400() -> None:
    with pytest.raises(InvalidPayload):
        parse_state_machine({**SPEC_EXAMPLE, "active": "yes"})
    with pytest.raises(InvalidPayload):
        parse_state_machine({**SPEC_EXAMPLE, "states": []})


def test_graph_lists_states_and_edges() -> None:
    graph = parse_state_machine(SPEC_EXAMPLE).graph()
    assert graph["initial"] == "open"
    assert [s["name"] for s in graph["states"]] == [
        "open",
        "assigned",
        "resolved",
        "on_hold",
        "closed",
    ]
    closed = next(s for s in graph["states"] if s["name"] == "closed")
    assert closed == {"name": "closed", "initial": False, "terminal": True, "reachable": True}
    resolved = next(s for s in graph["states"] if s["name"] == "resolved")
    assert resolved["reachable"] is False
    assert graph["edges"][1:] == [
        {
            "from": "resolved",
            "to": "closed",
            "roles": ["agent"],
            "guarded": True,
            "actions": ["set_field"],
        },
        {
            "from": "on_hold",
            "to": "closed",
            "roles": ["agent"],
            "guarded": True,
            "actions": ["set_field"],
        },
    ]


def test_book_keeps_active_machines_by_entity_and_skips_stale_rows() -> None:
    rows = [
        {"id": "1", **SPEC_EXAMPLE},
        {"id": "2", **machine({"from": "a", "to": "b"}, initial=None), "field": "stage"},
        {"id": "3", **SPEC_EXAMPLE, "field": "gone"},
        {"id": "4", **SPEC_EXAMPLE, "field": "resolution", "active": False},
    ]
    book = MachineBook.build(REGISTRY, rows)
    assert [m.id for m in book.for_entity("ticket")] == ["2", "1"]  # by field
    assert book.problems == ("state machine 3 skipped: field not found: ticket.gone",)
