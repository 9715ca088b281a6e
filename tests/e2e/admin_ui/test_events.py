"""The events pages against the `_events` routes: the stream (filter, colours, live updates), a
trace's waterfall, and the stats dashboard's charts."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support.admin_ui import Api, UiPage, invoicing_app

pytestmark = pytest.mark.e2e


def test_stream_trace_and_stats(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    trace_id = str(uuid.uuid4())
    status, body = ui_server.call(
        "POST",
        f"/api/{app}/invoice",
        token,
        {
            "number": "EV-1",
            "invoice_items": {"data": [{"description": "a", "qty": 1, "unit_price": "2.00"}]},
        },
        headers={"X-Trace-ID": trace_id},
    )
    assert status == 201, body
    ui.log_in_platform(f"/admin/apps/{app}/events?source=http")
    page = ui.page
    page.get_by_role("heading", name="Events").wait_for()
    page.locator("li.event.src-http").first.wait_for()
    assert page.locator("li.event:not(.src-http)").count() == 0  # the filter holds
    shown = page.locator("li.event").count()
    # Live: a new request shows up without a reload.
    ui_server.ok("GET", f"/api/{app}/invoice", token)
    page.wait_for_function(
        "(n) => document.querySelectorAll('li.event').length > n", arg=shown, timeout=30_000
    )
    ui.screenshot("events-stream")
    ui.assert_clean()

    page.get_by_role("link", name=f"Trace {trace_id[:8]}").first.click()
    page.get_by_role("heading", name=f"Trace {trace_id[:8]}").wait_for()
    timeline = page.get_by_role("list", name="Span timeline")
    timeline.locator("li").nth(2).wait_for()
    text = timeline.inner_text()
    assert "request" in text and "record.create" in text
    assert timeline.locator("li.src-http").count() == 1
    trace = ui_server.ok("GET", f"/api/{app}/_events/trace/{trace_id}", token)["data"]
    assert timeline.locator("li").count() == len(trace["spans"])
    ui.screenshot("trace-waterfall")
    ui.assert_clean()

    page.get_by_role("link", name="Stats").click()
    page.get_by_role("list", name="Totals").wait_for()
    page.get_by_role("img", name="Duration by source (ms)").locator("canvas").wait_for()
    page.get_by_role("img", name="Latest requests (ms)").locator("canvas").wait_for()
    assert page.get_by_role("rowheader", name="http").count() == 1
    total = ui_server.ok("GET", f"/api/{app}/_events/stats", token)["data"]["total_events"]
    assert re.search(r"\d+ events", page.get_by_role("list", name="Totals").inner_text())
    assert total > 0
    ui.screenshot("events-stats")
    ui.assert_clean()
