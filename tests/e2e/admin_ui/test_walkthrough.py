"""The issue's "Done when", in one browser session and without curl: log in with the seeded
platform account, create an app, define two related entities, enter a record with a child, add a
rule and see it reject a bad record, approve a workflow step, and follow the trace of that request.
Every step is checked on the page and against the API."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.support.admin_ui import Api, UiPage

pytestmark = pytest.mark.e2e

STEPS = [
    {
        "id": "review",
        "type": "approval",
        "assignee": {"type": "role", "role": "admin"},
        "on_approve": {"goto": "approve"},
        "on_reject": "end",
    },
    {
        "id": "approve",
        "type": "action",
        "actions": [
            {
                "type": "set_field",
                "entity": "invoice",
                "record_id": "context.record_id",
                "field": "status",
                "value": "approved",
            }
        ],
        "then": "end",
    },
]


def field_row(ui: UiPage, number: int):  # type: ignore[no-untyped-def]
    return ui.page.get_by_role("group", name=re.compile(rf"^Field {number}\b"))


def add_field(ui: UiPage, number: int, name: str, type_: str) -> None:
    ui.page.get_by_role("button", name="Add a field").click()
    row = field_row(ui, number)
    row.get_by_label("Name").fill(name)
    row.get_by_label("Type").select_option(type_)


def test_done_when_walkthrough(ui: UiPage, ui_server: Api) -> None:
    page = ui.page
    app = f"walk{int(time.time() * 1000) % 10**8}"

    # 1. Log in with the seeded platform account; create an app.
    ui.log_in_platform()
    page.get_by_label("Name", exact=True).fill(app)
    page.get_by_role("button", name="Create app").click()
    page.get_by_role("status").filter(has_text=f"App {app} created").wait_for()
    token = ui_server.platform_token()
    assert ui_server.ok("GET", f"/api/_platform/apps/{app}", token)["data"]["name"] == app
    page.get_by_role("link", name=app).click()
    page.get_by_role("heading", name=f"App {app}").wait_for()

    # 2. Define two entities; the first try shows the API's error at the field it concerns.
    page.get_by_role("link", name="Entities", exact=True).click()
    page.get_by_role("link", name="New entity").click()
    page.get_by_label("Entity name").fill("invoice")
    page.get_by_label("Table").fill("invoices")
    add_field(ui, 2, "Number", "string")
    field_row(ui, 2).get_by_label("Required").check()
    add_field(ui, 3, "status", "string")
    field_row(ui, 3).get_by_label("Default (JSON or text)").fill("draft")
    field_row(ui, 3).get_by_label("Allowed values (comma separated)").fill(
        "draft, submitted, approved"
    )
    add_field(ui, 4, "amount", "int")
    page.get_by_role("button", name="Create entity").click()
    name_input = field_row(ui, 2).get_by_label("Name")
    page.get_by_role("alert").wait_for()
    assert name_input.get_attribute("aria-invalid") == "true"
    described = name_input.get_attribute("aria-describedby") or ""
    message = page.locator(f"#{described.split()[-1]}").inner_text()
    assert 'field name "Number" is invalid' in message
    ui.screenshot("entity-field-error")
    ui.assert_accessible()
    name_input.fill("number")
    page.get_by_role("button", name="Create entity").click()
    page.get_by_text("Entity created.").wait_for()
    page.get_by_role("heading", name="Entity invoice").wait_for()

    page.get_by_role("link", name="Entities", exact=True).click()
    page.get_by_role("link", name="New entity").click()
    page.get_by_label("Entity name").fill("item")
    page.get_by_label("Table").fill("items")
    add_field(ui, 2, "invoice_id", "uuid")
    add_field(ui, 3, "label", "string")
    field_row(ui, 3).get_by_label("Required").check()
    add_field(ui, 4, "qty", "int")
    page.get_by_role("button", name="Create entity").click()
    page.get_by_text("Entity created.").wait_for()
    entities = ui_server.ok("GET", f"/api/{app}/_admin/entities", token)["data"]
    assert {e["name"]: [f["name"] for f in e["definition"]["fields"]] for e in entities} == {
        "invoice": ["id", "number", "status", "amount"],
        "item": ["id", "invoice_id", "label", "qty"],
    }

    # ... related: invoice 1:N item.
    page.get_by_role("link", name="Relations", exact=True).click()
    page.get_by_label("Relation name").fill("invoice_items")
    page.get_by_label("Source (parent)").select_option("invoice")
    page.get_by_label("Target (child)").select_option("item")
    page.get_by_label("Target key (foreign key on the child)").select_option("invoice_id")
    page.get_by_label("On delete").select_option("cascade")
    page.get_by_role("button", name="Create relation").click()
    page.get_by_role("status").filter(has_text="Relation invoice_items saved").wait_for()
    diagram = page.get_by_role("img", name="Entity-relationship diagram")
    diagram.locator("text=invoice_items (one to many)").wait_for()
    assert diagram.locator("g.node").count() == 2
    ui.screenshot("relations")
    ui.assert_accessible()
    relation = ui_server.ok("GET", f"/api/{app}/_admin/relations/invoice_items", token)["data"]
    assert relation["definition"]["target_key"] == "invoice_id"

    # 3. Enter a record with a child.
    page.get_by_role("link", name="Data", exact=True).click()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_role("link", name="New invoice").click()
    page.get_by_label("number", exact=True).fill("INV-1")
    page.get_by_label("amount", exact=True).fill("100")
    page.get_by_role("button", name="Add item").click()
    page.get_by_label("new item 1 label").fill("Widget")
    page.get_by_label("new item 1 qty").fill("2")
    page.get_by_role("button", name="Create invoice").click()
    page.get_by_text("invoice created.").wait_for()
    page.get_by_role("group", name=re.compile(r"^item [0-9a-f-]{36}$")).wait_for()
    ui.screenshot("record-with-child")
    ui.assert_accessible()
    invoices = ui_server.ok("GET", f"/api/{app}/invoice?include=invoice_items", token)["data"]
    assert len(invoices) == 1 and invoices[0]["number"] == "INV-1"
    assert invoices[0]["status"] == "draft"
    assert [(i["label"], i["qty"]) for i in invoices[0]["invoice_items"]] == [("Widget", 2)]
    invoice_id = invoices[0]["id"]

    # 4. A rule, tried in the live panel, then rejecting a bad record.
    page.get_by_role("link", name="Rules", exact=True).click()
    page.get_by_role("button", name="New rule").click()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_label("Expression (true means the record is rejected)").fill("record.amount < 0")
    page.get_by_label("Message").fill("Amount must not be negative")
    page.get_by_label("Record (the values the write sends)").fill('{"amount": -5}')
    page.locator(".test-result").get_by_text("Amount must not be negative").wait_for()
    page.get_by_label("Record (the values the write sends)").fill('{"amount": 5}')
    page.locator(".test-result").get_by_text("Passes.").wait_for()
    ui.screenshot("rule-test-panel")
    ui.assert_accessible()
    page.get_by_role("button", name="Create rule").click()
    page.get_by_role("status").filter(has_text="Rule created.").wait_for()
    assert len(ui_server.ok("GET", f"/api/{app}/_admin/rules", token)["data"]) == 1

    page.get_by_role("link", name="Data", exact=True).click()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_role("link", name="New invoice").click()
    page.get_by_label("number", exact=True).fill("INV-BAD")
    page.get_by_label("amount", exact=True).fill("-5")
    page.get_by_role("button", name="Create invoice").click()
    alert = page.get_by_role("alert")
    alert.get_by_text("Amount must not be negative").wait_for()
    assert "VALIDATION_FAILED" in alert.inner_text()
    ui.screenshot("rule-rejects")
    ui.assert_accessible()
    assert ui_server.ok("GET", f"/api/{app}/invoice", token)["meta"]["total"] == 1

    # 5. A workflow; submitting the invoice starts it; approve its step with a comment.
    page.get_by_role("link", name="Workflows", exact=True).click()
    page.get_by_role("button", name="New workflow").click()
    page.get_by_label("Workflow name").fill("invoice_approval")
    page.get_by_label("Trigger entity").select_option("invoice")
    page.get_by_label("Trigger field").select_option("status")
    page.get_by_label("Changed to").fill("submitted")
    page.get_by_label("Steps", exact=True).fill(json.dumps(STEPS, indent=2))
    page.get_by_role("img", name="Steps of the workflow being edited").wait_for()
    page.get_by_role("button", name="Create workflow").click()
    page.get_by_role("status").filter(has_text="Workflow created.").wait_for()
    ui.screenshot("workflows")
    ui.assert_accessible()

    ui.goto(f"/admin/apps/{app}/data/invoice/{invoice_id}")  # a deep link to the record
    page.get_by_label("status", exact=True).select_option("submitted")
    page.get_by_role("button", name="Save invoice").click()
    page.get_by_text("invoice saved.").wait_for()

    page.get_by_role("link", name="Approvals", exact=True).click()
    # The instance reaches its approval step in the background, after the write commits.
    ui.reload_until(page.get_by_role("heading", name="invoice_approval: review"))
    page.get_by_label("Comment on invoice_approval review").fill("Looks right")
    ui.screenshot("approvals")
    ui.assert_accessible()
    with page.expect_response(lambda r: r.url.endswith("/approve")) as approving:
        page.get_by_role("button", name="Approve").click()
    approved = approving.value
    assert approved.status == 200
    page.get_by_role("status").filter(
        has_text="Approved: invoice_approval is now completed"
    ).wait_for()
    record = ui_server.ok("GET", f"/api/{app}/invoice/{invoice_id}", token)["data"]
    assert record["status"] == "approved"
    instance_id = approved.json()["data"]["id"]
    instance = ui_server.ok("GET", f"/api/{app}/_workflows/{instance_id}", token)["data"]
    assert [(h["step"], h["status"], h.get("comment")) for h in instance["history"]] == [
        ("review", "approved", "Looks right"),
        ("approve", "completed", None),
    ]

    # 6. Follow the trace of the approving request, from the link the approval shows.
    page.get_by_role("link", name="follow the trace of this request").click()
    trace_id = approved.headers["x-trace-id"]
    page.get_by_role("heading", name=f"Trace {trace_id[:8]}").wait_for()
    timeline = page.get_by_role("list", name="Span timeline")
    # The request's own span is the root once the trace is stored whole (the page asks again
    # until it is): the approval and its steps nested below it.
    timeline.locator("li.src-http:first-child").wait_for()
    timeline.get_by_text("workflow.approve").first.wait_for()
    trace = ui_server.ok("GET", f"/api/{app}/_events/trace/{trace_id}", token)["data"]
    approve_path = f"/api/{app}/_workflows/{instance_id}/approve"
    assert trace["root_span"]["metadata"]["path"] == approve_path
    assert timeline.locator("li").count() == len(trace["spans"])
    assert approve_path in page.locator("table").inner_text()
    ui.screenshot("walkthrough-trace")
    ui.assert_clean(http_errors=True)

    # 7. The workflow's runs and the run's history, from the workflows page.
    page.get_by_role("link", name="Workflows", exact=True).click()
    page.get_by_role("link", name="Runs of invoice_approval").click()
    page.get_by_role("heading", name="Runs of invoice_approval").wait_for()
    runs = page.locator("tbody tr")
    runs.first.wait_for()
    assert runs.count() == 1 and "completed" in runs.first.inner_text()
    assert "approve: completed" in runs.first.inner_text()
    ui.screenshot("workflow-runs")
    ui.assert_accessible()
    runs.first.get_by_role("link").click()
    page.get_by_role("heading", name="Workflow invoice_approval").wait_for()
    assert page.url.endswith(f"/instances/{instance_id}")
    history = page.locator("ol.history").inner_text()
    assert "review: approved" in history and "Looks right" in history
    assert "approve: completed" in history
    ui.screenshot("instance-history")
    ui.assert_accessible()
