"""The UI's pure functions, run in the browser as the pages run them (no node): the router's
path matching, the trace waterfall's layout, the state and step graphs of the diagrams."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.admin_ui import UiPage

pytestmark = pytest.mark.e2e


def run(ui: UiPage, module: str, body: str) -> Any:
    """`body` (a function of the imported module `m`) evaluated after importing `module`."""
    ui.goto("/admin/login")
    ui.page.get_by_role("button", name="Log in").wait_for()
    return ui.page.evaluate(
        f"""async () => {{
            const root = document.querySelector('script[type=module]').src.replace(/app\\.js$/, '');
            const m = await import(root + '{module}');
            return ({body})(m);
        }}"""
    )


def test_route_matching(ui: UiPage) -> None:
    got = run(
        ui,
        "lib/router.js",
        """(m) => [m.match('/admin/apps/:app/data/:entity', '/admin/apps/shop/data/invoice/'),
                 m.match('/admin/apps/:app', '/admin/apps/shop/entities'),
                 m.match('/admin/apps/:app/data/:entity/:id', '/admin/apps/shop/data/doc/a%2Fb')]""",
    )
    assert got == [
        {"app": "shop", "entity": "invoice"},
        None,
        {"app": "shop", "entity": "doc", "id": "a/b"},
    ]


def test_waterfall_lays_children_out_in_sequence_inside_the_parent(ui: UiPage) -> None:
    got = run(
        ui,
        "pages/events.js",
        """(m) => m.waterfall({span_id: 'r', duration_ms: 10, children: [
                 {span_id: 'a', duration_ms: 4, children: [{span_id: 'a1', duration_ms: 1, children: []}]},
                 {span_id: 'b', duration_ms: 9, children: []},
                 {span_id: 'c', duration_ms: null, children: []}]})
               .map((r) => [r.node.span_id, r.depth, r.start, r.end])""",
    )
    # b starts after a and is cut at the root's end; c (an event) sits where b ended.
    assert got == [
        ["r", 0, 0, 10],
        ["a", 1, 0, 4],
        ["a1", 2, 0, 1],
        ["b", 1, 4, 10],
        ["c", 1, 10, 10],
    ]


def test_state_and_step_graphs(ui: UiPage) -> None:
    states = run(
        ui,
        "pages/state-machines.js",
        """(m) => m.stateGraph({initial: 'draft', transitions: [
                 {from: ['draft', 'sent'], to: 'void'}, {from: 'draft', to: 'sent', guard: 'x'},
                 {from: 'sent'}, null]})""",
    )
    assert [n["id"] for n in states["nodes"]] == ["draft", "void", "sent"]
    assert [n.get("initial") for n in states["nodes"]] == [True, False, False]
    assert [(e["from"], e["to"], e["label"]) for e in states["edges"]] == [
        ("draft", "void", ""),
        ("sent", "void", ""),
        ("draft", "sent", "guard"),
    ]
    steps = run(
        ui,
        "pages/workflows.js",
        """(m) => m.stepGraph([
                 {id: 'check', type: 'condition', on_true: {goto: 'review'}, on_false: 'end'},
                 {id: 'review', type: 'approval', on_approve: {goto: 'nowhere'}, on_reject: 'end'}])""",
    )
    assert [(e["from"], e["to"], e["label"]) for e in steps["edges"]] == [
        ("__start", "check", ""),
        ("check", "review", "true"),
        ("check", "end", "false"),
        ("review", "end", "reject"),
    ]  # a goto to an unknown step draws no edge
