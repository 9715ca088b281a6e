"""Workflow definitions without a database: durations, gotos, cycles, warnings, paths."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rocketd.capabilities.workflows.model import parse_duration, parse_workflow, resolve_path
from rocketd.metadata.parse import MetadataError

TRIGGER = {"type": "state_change", "entity": "doc", "field": "status", "to": "sent"}


def flow(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "w", "trigger": TRIGGER, "steps": list(steps)}


def action(step_id: str, then: Any = None) -> dict[str, Any]:
    step: dict[str, Any] = {"id": step_id, "type": "action", "actions": []}
    if then is not None:
        step["then"] = then
    return step


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("90m", 5400),
        ("1h30m", 5400),
        ("72h", 259200),
        ("2d", 172800),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("3650d", 3650 * 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "10", "1x", "1h 30m", "-1h", "0s", 5, None])
def test_invalid_durations(text: object) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize("text", ["3651d", "999999999d", "99999999999d", "1" + "0" * 400 + "s"])
def test_durations_beyond_ten_years_are_invalid_not_an_overflow(text: str) -> None:
    # 99999999999d overflowed timedelta (a 500 at save time); 999999999d made every deadline
    # overflow the date range when an approval step started.
    assert parse_duration(text) is None


def test_goto_forms_and_defaults() -> None:
    wf = parse_workflow(
        flow(
            {
                "id": "c",
                "type": "condition",
                "expression": "context.n > 1",
                "on_true": "a",
                "on_false": {"goto": "end"},
            },
            action("a", {"goto": "b"}),
            action("b", "end"),
        )
    )
    assert wf.active is True and dict(wf.context) == {}
    c = wf.step("c")
    assert c is not None and c.goto("on_true") == "a" and c.goto("on_false") is None
    assert wf.warnings == ()


def test_spinning_cycles_are_rejected_but_approval_loops_are_not() -> None:
    with pytest.raises(MetadataError, match="cycle without an approval step: a -> b -> a"):
        parse_workflow(flow(action("a", {"goto": "b"}), action("b", {"goto": "a"})))
    with pytest.raises(MetadataError, match="cycle without an approval step"):
        parse_workflow(flow(action("a", {"goto": "a"})))
    approval = {"id": "wait", "type": "approval", "on_approve": {"goto": "a"}, "on_reject": "end"}
    wf = parse_workflow(flow(action("a", {"goto": "wait"}), approval))
    assert [s.id for s in wf.steps] == ["a", "wait"]


def test_every_problem_is_reported_at_once() -> None:
    body = {
        "name": "",
        "trigger": {"type": "cron", "entity": ""},
        "steps": [action("a", "zzz"), action("a"), {"type": "action"}, {"id": "x", "type": "wait"}],
    }
    with pytest.raises(MetadataError) as caught:
        parse_workflow(body)
    messages = [d.message for d in caught.value.details]
    for expected in (
        "workflow name is required",
        "unsupported trigger type: cron",
        "trigger entity is required",
        "step id is required",
        "invalid step type: wait (must be action, condition, or approval)",
        "duplicate step id: a",
        "goto target not found: zzz",
    ):
        assert expected in messages, messages


def test_unreachable_steps_warn() -> None:
    wf = parse_workflow(flow(action("a"), action("lost")))
    assert wf.warnings == ("step lost is unreachable",)
    assert wf.to_json()["warnings"] == ["step lost is unreachable"]


def test_resolve_path() -> None:
    root = {"record": {"a": {"b": 1}}, "id": 7}
    assert resolve_path(root, "record.a.b") == 1
    assert resolve_path(root, "record.a.c") is None
    assert resolve_path(root, "id.x") is None
