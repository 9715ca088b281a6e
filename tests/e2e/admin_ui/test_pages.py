"""Each admin page doing its main job in the browser against a real server, checked on the page
and through the API, with an axe-core scan and a screenshot."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin_ui import Api, UiPage, invoicing_app

pytestmark = pytest.mark.e2e


def new_invoice(api: Api, app: str, token: str, number: str, **values: Any) -> dict[str, Any]:
    body = {"number": number, **values}
    return dict(api.ok("POST", f"/api/{app}/invoice", token, body)["data"])


def test_entity_editor_shows_migration_notes(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    ui_server.ok("POST", f"/api/{app}/tag", token, {"label": "urgent"})
    ui.log_in_platform(f"/admin/apps/{app}/entities")
    page = ui.page
    entities = page.get_by_role("table")
    entities.get_by_role("link", name="tag", exact=True).wait_for()
    assert entities.get_by_role("rowheader").all_inner_texts() == [
        "customer",
        "invoice",
        "item",
        "tag",
    ]
    ui.screenshot("entities")
    ui.assert_clean()
    entities.get_by_role("link", name="tag", exact=True).click()
    page.get_by_role("heading", name="Entity tag").wait_for()
    page.get_by_role("button", name="Add a field").click()
    row = page.get_by_role("group", name=re.compile(r"^Field 3\b"))
    row.get_by_label("Name").fill("colour")
    row.get_by_label("Required").check()
    page.get_by_role("button", name="Save entity").click()
    notes = page.locator("ul.migration-notes")
    notes.wait_for()
    assert "field colour: added as a nullable column" in notes.inner_text()
    ui.screenshot("entity-editor")
    ui.assert_clean()
    fields = ui_server.ok("GET", f"/api/{app}/_admin/entities/tag", token)["data"]["definition"]
    assert {"name": "colour", "type": "string", "required": True} in fields["fields"]


def test_data_browser_filters_sorts_pages_and_includes(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    for number, status in (("INV-1", "draft"), ("INV-2", "paid"), ("INV-3", "paid")):
        new_invoice(
            ui_server,
            app,
            token,
            number,
            status=status,
            invoice_items={"data": [{"description": "x", "qty": 1, "unit_price": "1.00"}]},
        )
    ui.log_in_platform(f"/admin/apps/{app}/data")
    page = ui.page
    page.get_by_text("Choose an entity to browse its records.").wait_for()
    ui.assert_clean()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_text("3 records").wait_for()
    page.get_by_label("Filter field").select_option("status")
    page.get_by_label("Operator").select_option("in")
    page.get_by_label("Value").fill("paid,void")
    page.get_by_role("button", name="Add filter").click()
    page.get_by_text("2 records").wait_for()
    page.get_by_label("Sort by").select_option("number")
    page.get_by_label("Direction").select_option("desc")
    page.get_by_label("invoice_items").check()
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("columnheader", name="invoice_items").wait_for()
    rows = page.locator("tbody tr")
    # The header shows with the new query, the included children once its answer is in.
    rows.first.locator("td", has_text='"qty":1').wait_for()
    assert rows.count() == 2 and rows.nth(0).inner_text().startswith(tuple("0123456789abcdef"))
    numbers = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(2)]
    assert numbers == ["INV-3", "INV-2"]
    assert '"qty":1' in rows.nth(0).inner_text()
    # The URL is the API's query: a reload shows the same view.
    assert "filter%5Bstatus.in%5D=paid%2Cvoid" in page.url and "sort=-number" in page.url
    page.reload()
    page.get_by_text("2 records").wait_for()
    ui.screenshot("data-browser")
    ui.assert_clean()
    page.get_by_role("button", name="Remove filter status in paid,void").click()
    page.get_by_text("3 records").wait_for()
    page.get_by_label("Per page").select_option("10")
    page.get_by_label("Filter field").select_option("number")
    page.get_by_label("Operator").select_option("like")
    page.get_by_label("Value").fill("INV-2%")
    page.get_by_role("button", name="Add filter").click()
    page.get_by_text("1 record", exact=True).wait_for()


def test_record_editor_nested_children_diff(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    invoice = new_invoice(
        ui_server,
        app,
        token,
        "INV-9",
        items={
            "data": [
                {"description": "keep", "qty": 1, "unit_price": "1.00"},
                {"description": "drop", "qty": 1, "unit_price": "1.00"},
            ]
        },
    )
    ui.log_in_platform(f"/admin/apps/{app}/data/invoice/{invoice['id']}")
    page = ui.page
    page.get_by_role("heading", name=f"invoice {invoice['id']}").wait_for()
    page.get_by_label("item 1 qty", exact=True).fill("5")
    page.get_by_label(re.compile(r"^Delete item \d+$")).nth(1).check()
    page.get_by_role("button", name="Add item").click()
    page.get_by_label("new item 3 description").fill("new")
    page.get_by_label("new item 3 qty").fill("2")
    page.get_by_label("new item 3 unit_price").fill("3.50")
    page.get_by_role("button", name="Save invoice").click()
    page.get_by_text("invoice saved.").wait_for()
    ui.screenshot("record-editor")
    ui.assert_clean()
    record = ui_server.ok(
        "GET", f"/api/{app}/invoice/{invoice['id']}?include=invoice_items", token
    )["data"]
    assert sorted((i["description"], i["qty"]) for i in record["invoice_items"]) == [
        ("keep", 5),
        ("new", 2),
    ]
    # Replace mode: the listed children become the children.
    page.get_by_label("Write mode for invoice_items").select_option("replace")
    page.get_by_label(re.compile(r"^Delete item \d+$")).first.check()
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        page.get_by_role("button", name="Save invoice").click()
    assert answer.value.status == 200
    page.get_by_text("invoice saved.").wait_for()
    record = ui_server.ok(
        "GET", f"/api/{app}/invoice/{invoice['id']}?include=invoice_items", token
    )["data"]
    assert len(record["invoice_items"]) == 1


def test_record_editor_nested_children_append(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    red, blue = (
        ui_server.ok("POST", f"/api/{app}/tag", token, {"label": n})["data"]
        for n in ("red", "blue")
    )
    invoice = new_invoice(
        ui_server,
        app,
        token,
        "AP-1",
        invoice_items={
            "data": [
                {"description": "first", "qty": 1, "unit_price": "1.00"},
                {"description": "second", "qty": 2, "unit_price": "1.00"},
            ]
        },
        invoice_tags={"data": [{"id": red["id"]}]},
    )
    path = f"/api/{app}/invoice/{invoice['id']}?include=invoice_items,invoice_tags"
    before = {i["id"]: i for i in ui_server.ok("GET", path, token)["data"]["invoice_items"]}
    ui.log_in_platform(f"/admin/apps/{app}/data/invoice/{invoice['id']}")
    page = ui.page
    page.get_by_role("heading", name=f"invoice {invoice['id']}").wait_for()
    # Append only adds: the children and links there now are shown as they stay, not editable.
    page.get_by_label("Write mode for invoice_items").select_option("append")
    first = min(before)
    page.get_by_role("group", name=f"item {first} stays as it is").wait_for()
    assert page.get_by_label(f"item {first} qty", exact=True).count() == 0
    assert page.get_by_label(re.compile(r"^Delete item \d+$")).count() == 0
    page.get_by_role("button", name="Add item").click()
    page.get_by_label("new item 3 description").fill("third")
    page.get_by_label("new item 3 qty").fill("3")
    page.get_by_label("new item 3 unit_price").fill("2.50")
    page.get_by_label("Write mode for invoice_tags").select_option("append")
    page.get_by_text(f"red ({red['id']}) stays linked").wait_for()
    assert page.get_by_label(f"Unlink red ({red['id']})").count() == 0
    page.get_by_label("Link a tag").select_option(str(blue["id"]))
    page.get_by_role("button", name="Link tag").click()
    ui.screenshot("record-append")
    ui.assert_clean()
    with page.expect_request(lambda r: r.method == "PUT") as sent:
        page.get_by_role("button", name="Save invoice").click()
    body = sent.value.post_data_json
    assert body["invoice_items"] == {
        "_write_mode": "append",
        "data": [{"description": "third", "qty": 3, "unit_price": "2.50"}],
    }
    assert body["invoice_tags"] == {"_write_mode": "append", "data": [{"id": blue["id"]}]}
    page.get_by_text("invoice saved.").wait_for()
    record = ui_server.ok("GET", path, token)["data"]
    items = {i["id"]: i for i in record["invoice_items"]}
    assert {k: v for k, v in items.items() if k in before} == before  # untouched
    assert [(i["description"], i["qty"]) for k, i in items.items() if k not in before] == [
        ("third", 3)
    ]
    assert sorted(t["label"] for t in record["invoice_tags"]) == ["blue", "red"]
    # The relation's own write mode is the default: with `replace`, the rows the form did not
    # change are sent too, so they stay.
    relation = ui_server.ok("GET", f"/api/{app}/_admin/relations/invoice_items", token)["data"]
    definition = {**relation["definition"], "write_mode": "replace"}
    ui_server.ok("PUT", f"/api/{app}/_admin/relations/invoice_items", token, definition)
    page.reload()
    mode = page.get_by_label("Write mode for invoice_items")
    mode.locator("option", has_text="default (replace)").wait_for(state="attached")
    assert mode.input_value() == ""
    page.get_by_label(f"item {first} qty", exact=True).fill("7")
    page.get_by_role("button", name="Save invoice").click()
    page.get_by_text("invoice saved.").wait_for()
    record = ui_server.ok("GET", path, token)["data"]
    assert sorted(i["id"] for i in record["invoice_items"]) == sorted(items)
    assert next(i["qty"] for i in record["invoice_items"] if i["id"] == first) == 7


def test_relations_edit_and_delete(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    ui.log_in_platform(f"/admin/apps/{app}/relations")
    page = ui.page
    diagram = page.get_by_role("img", name="Entity-relationship diagram")
    diagram.get_by_text("invoice_items (one to many)").wait_for()
    assert diagram.locator("g.edge").count() == 3
    # Edit: the form starts from the stored definition (a PUT replaces all of it); the name stays.
    page.get_by_role("button", name="Edit invoice_items").click()
    form = page.get_by_role("form", name="Edit relation invoice_items")
    # The form opens below the list: the focus moves to its heading.
    heading = form.get_by_role("heading", name="Edit relation invoice_items")
    assert heading.evaluate("el => el === document.activeElement")
    assert form.get_by_label("Relation name").get_attribute("readonly") is not None
    target_key = form.get_by_label("Target key (foreign key on the child)")
    assert target_key.input_value() == "invoice_id"
    target_key.select_option("")
    form.get_by_role("button", name="Save relation").click()
    assert "target_key is required" in form.locator(".field-error").inner_text()
    assert target_key.get_attribute("aria-invalid") == "true"
    target_key.select_option("invoice_id")
    form.get_by_label("Type").select_option("one_to_one")
    form.get_by_label("On delete").select_option("restrict")
    form.get_by_label("Nested write mode").select_option("append")
    form.get_by_label("Fetch").select_option("eager")
    ui.screenshot("relations-edit")
    ui.assert_clean(http_errors=True)
    form.get_by_role("button", name="Save relation").click()
    page.get_by_role("status").filter(has_text="Relation invoice_items saved.").wait_for()
    page.get_by_role("form", name="New relation").wait_for()
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="invoice_items"))
    row.get_by_role("cell", name="one_to_one").wait_for()  # the list is read again after a save
    assert "restrict" in row.inner_text()
    diagram.get_by_text("invoice_items (one to one)").wait_for()
    assert diagram.get_by_text("invoice_items (one to many)").count() == 0
    stored = ui_server.ok("GET", f"/api/{app}/_admin/relations/invoice_items", token)["data"]
    assert {
        k: stored["definition"].get(k) for k in ("type", "on_delete", "write_mode", "fetch")
    } == {
        "type": "one_to_one",
        "on_delete": "restrict",
        "write_mode": "append",
        "fetch": "eager",
    }
    assert (stored["source"], stored["target"], stored["definition"]["target_key"]) == (
        "invoice",
        "item",
        "invoice_id",
    )
    # Delete: only once the name is typed.
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="invoice_tags"))
    row.get_by_role("button", name="Delete…").click()
    confirm = row.get_by_role("button", name="Delete relation")
    assert confirm.is_disabled()
    row.get_by_label("Type invoice_tags to delete this relation").fill("invoice_tag")
    assert confirm.is_disabled()
    ui.assert_accessible()
    row.get_by_label("Type invoice_tags to delete this relation").fill("invoice_tags")
    confirm.click()
    page.get_by_role("status").filter(has_text="Relation invoice_tags deleted.").wait_for()
    page.get_by_role("rowheader", name="invoice_tags").wait_for(state="detached")
    diagram.get_by_text("invoice_tags (many to many)").wait_for(state="detached")
    assert diagram.locator("g.edge").count() == 2
    assert ui_server.call("GET", f"/api/{app}/_admin/relations/invoice_tags", token)[0] == 404
    names = [r["name"] for r in ui_server.ok("GET", f"/api/{app}/_admin/relations", token)["data"]]
    assert names == ["customer_invoices", "invoice_items"]


def test_record_editor_links_many_to_many(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    tags = [
        ui_server.ok("POST", f"/api/{app}/tag", token, {"label": n})["data"]
        for n in ("red", "blue")
    ]
    invoice = new_invoice(
        ui_server, app, token, "MN-1", invoice_tags={"data": [{"id": tags[0]["id"]}]}
    )
    ui.log_in_platform(f"/admin/apps/{app}/data/invoice/{invoice['id']}")
    page = ui.page
    page.get_by_label(f"Unlink red ({tags[0]['id']})").check()
    page.get_by_label("Link a tag").select_option(tags[1]["id"])
    page.get_by_role("button", name="Link tag").click()
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        page.get_by_role("button", name="Save invoice").click()
    assert answer.value.status == 200
    page.get_by_label(f"Unlink blue ({tags[1]['id']})").wait_for()
    ui.screenshot("record-links")
    ui.assert_clean()
    record = ui_server.ok("GET", f"/api/{app}/invoice/{invoice['id']}?include=invoice_tags", token)
    assert [t["label"] for t in record["data"]["invoice_tags"]] == ["blue"]


def test_file_field_upload_and_download(ui: UiPage, ui_server: Api, tmp_path: Path) -> None:
    app = ui_server.new_app()
    token = ui_server.platform_token()
    ui_server.ok(
        "POST",
        f"/api/{app}/_admin/entities",
        token,
        {
            "name": "doc",
            "table": "docs",
            "primary_key": {"field": "id", "type": "uuid", "generated": True},
            "fields": [
                {"name": "id", "type": "uuid"},
                {"name": "title", "type": "string"},
                {"name": "attachment", "type": "file"},
            ],
        },
    )
    upload = tmp_path / "notes.txt"
    upload.write_text("hello from the admin UI\n")
    ui.log_in_platform(f"/admin/apps/{app}/data/doc/new")
    page = ui.page
    page.get_by_label("title").fill("First")
    page.get_by_label("attachment").set_input_files(str(upload))
    page.get_by_role("button", name="Download notes.txt").wait_for()
    page.get_by_role("button", name="Create doc").click()
    page.get_by_text("doc created.").wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download notes.txt").click()
    downloaded = info.value
    assert downloaded.suggested_filename == "notes.txt"
    assert Path(downloaded.path()).read_text() == "hello from the admin UI\n"
    ui.screenshot("file-field")
    ui.assert_clean()
    docs = ui_server.ok("GET", f"/api/{app}/doc", token)["data"]
    assert docs[0]["attachment"]["filename"] == "notes.txt"


def test_state_machine_with_diagram(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    ui.log_in_platform(f"/admin/apps/{app}/state-machines")
    page = ui.page
    page.get_by_role("button", name="New state machine").click()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_label("State field").select_option("status")
    page.get_by_label("Initial state").fill("draft")
    page.get_by_label("Transitions").fill("[]")
    page.get_by_role("button", name="Create state machine").click()
    page.get_by_role("alert").wait_for()  # the API's 422, shown
    transitions = [
        {"from": "draft", "to": "sent"},
        {"from": "sent", "to": "paid", "guard": "record.total > 0"},
        {"from": ["draft", "sent"], "to": "void"},
    ]
    page.get_by_label("Transitions").fill(json.dumps(transitions))
    page.get_by_role("button", name="Create state machine").click()
    page.get_by_role("status").filter(has_text="State machine created.").wait_for()
    diagram = page.get_by_role("img", name="State diagram of invoice.status")
    diagram.locator("g.node").nth(3).wait_for()
    assert diagram.locator("g.node").count() == 4
    assert diagram.locator("g.edge").count() == 4
    assert (diagram.locator("g.node.initial").text_content() or "").strip() == "draft"
    ui.screenshot("state-machines")
    ui.assert_clean(http_errors=True)
    machines = ui_server.ok("GET", f"/api/{app}/_admin/state-machines", token)["data"]
    assert machines[0]["definition"]["initial"] == "draft"
    # The machine now guards writes: an invalid transition is refused.
    invoice = new_invoice(ui_server, app, token, "SM-1", status="draft")
    status, body = ui_server.call(
        "PUT", f"/api/{app}/invoice/{invoice['id']}", token, {"status": "paid"}
    )
    assert status == 422, body


def test_users_invites_and_permissions(ui: UiPage, ui_server: Api, browser: Any) -> None:
    app, token = invoicing_app(ui_server)
    ui.log_in_platform(f"/admin/apps/{app}/users")
    page = ui.page
    page.get_by_role("button", name="New user").click()
    page.get_by_label("Email").fill("clerk@example.com")
    page.get_by_label("Password").fill("a long enough password 7")
    page.get_by_label("Roles (comma separated)").fill("clerk, viewer")
    page.get_by_role("button", name="Create user").click()
    page.get_by_role("status").filter(has_text="User created.").wait_for()
    users = ui_server.ok("GET", f"/api/{app}/_admin/users", token)["data"]
    clerk = next(u for u in users if u["email"] == "clerk@example.com")
    assert clerk["roles"] == ["clerk", "viewer"] and clerk["active"] is True
    ui.screenshot("users")
    ui.assert_clean()

    page.get_by_role("link", name="Invites", exact=True).click()
    page.get_by_label("Emails (one, or several").fill("new@example.com")
    page.get_by_label("Roles (comma separated)").fill("clerk")
    page.get_by_role("button", name="Invite", exact=True).click()
    link = page.locator("code.invite-link").first.inner_text()
    assert f"/admin/apps/{app}/accept-invite?token=" in link
    page.get_by_role("button", name="Copy link for new@example.com").click()
    page.get_by_text(re.compile("copied|refused the clipboard")).wait_for()
    # Bulk: one new, one already invited.
    page.get_by_label("Emails (one, or several").fill("a@example.com, new@example.com")
    page.get_by_role("button", name="Invite", exact=True).click()
    page.get_by_text("1 of 2 invited.").wait_for()
    ui.screenshot("invites")
    ui.assert_clean()
    # The link works for the invitee, in a browser of their own.
    invitee = browser.new_context()
    try:
        other = invitee.new_page()
        other.goto(link)
        other.get_by_label("Choose a password").wait_for()
        invitee_page = UiPage(other, ui_server.base, ui.shots)
        invitee_page.screenshot("accept-invite")
        invitee_page.assert_accessible()
        other.get_by_label("Choose a password").fill("another long password 8")
        other.get_by_role("button", name="Accept the invite").click()
        other.get_by_text("Signed in to this app as new@example.com").wait_for()
    finally:
        invitee.close()
    invites = ui_server.ok("GET", f"/api/{app}/_admin/invites", token)["data"]
    assert next(i for i in invites if i["email"] == "new@example.com")["accepted_at"]

    page.get_by_role("link", name="Permissions", exact=True).click()
    page.get_by_role("button", name="New permission").click()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_label("Action").select_option("read")
    page.get_by_label("Roles (comma separated)").fill("clerk")
    page.get_by_label("Conditions").fill('[{"field": "status", "operator": "eq", "value": "paid"}]')
    page.get_by_role("button", name="Create permission").click()
    page.get_by_role("status").filter(has_text="Permission created.").wait_for()
    ui.screenshot("permissions")
    ui.assert_clean()
    permissions = ui_server.ok("GET", f"/api/{app}/_admin/permissions", token)["data"]
    assert [(p["entity"], p["action"], p["roles"]) for p in permissions] == [
        ("invoice", "read", ["clerk"])
    ]


def test_webhook_and_delivery_log_retry(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    ui.log_in_platform(f"/admin/apps/{app}/webhooks")
    page = ui.page
    page.get_by_role("button", name="New webhook").click()
    page.get_by_label("Entity", exact=True).select_option("tag")
    # A loopback address: refused by the outbound safety rules, so the delivery fails.
    page.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    page.get_by_label("Retry").fill('{"max_attempts": 1, "backoff": "linear"}')
    page.get_by_role("button", name="Create webhook").click()
    page.get_by_role("status").filter(has_text="Webhook created.").wait_for()
    ui.screenshot("webhooks")
    ui.assert_clean()
    ui_server.ok("POST", f"/api/{app}/tag", token, {"label": "fires"})
    page.get_by_role("link", name="Delivery logs").click()
    page.get_by_label("Status").select_option("failed")
    retry = page.get_by_role("button", name=re.compile("^Retry delivery"))
    ui.reload_until(retry)  # the outbox delivers in the background
    ui.screenshot("webhook-logs")
    ui.assert_clean()
    retry.first.click()
    page.get_by_text(re.compile(r"queued again \(status retrying\)")).wait_for()
    logs = ui_server.ok("GET", f"/api/{app}/_admin/webhook-logs", token)["data"]
    assert len(logs) == 1 and logs[0]["status"] in ("retrying", "failed")


def test_files_page(ui: UiPage, ui_server: Api, tmp_path: Path) -> None:
    app = ui_server.new_app()
    token = ui_server.platform_token()
    upload = tmp_path / "report.csv"
    upload.write_text("a,b\n1,2\n")
    ui.log_in_platform(f"/admin/apps/{app}/files")
    page = ui.page
    page.get_by_label("Upload a file").set_input_files(str(upload))
    page.get_by_text("Uploaded report.csv (8 bytes).").wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download report.csv").click()
    assert Path(info.value.path()).read_text() == "a,b\n1,2\n"
    ui.screenshot("files")
    ui.assert_clean()
    assert [f["filename"] for f in ui_server.ok("GET", f"/api/{app}/_files", token)["data"]] == [
        "report.csv"
    ]
    page.get_by_role("button", name="Delete report.csv").click()
    page.get_by_text("No files yet.").wait_for()
    assert ui_server.ok("GET", f"/api/{app}/_files", token)["data"] == []


def test_ui_configs(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    ui.log_in_platform(f"/admin/apps/{app}/ui-configs")
    page = ui.page
    page.get_by_role("button", name="New UI config").click()
    page.get_by_label("Entity", exact=True).select_option("invoice")
    page.get_by_label("Config", exact=True).fill('{"list": {"columns": ["number", "status"]}}')
    page.get_by_role("button", name="Create UI config").click()
    page.get_by_role("status").filter(has_text="UI config created.").wait_for()
    page.get_by_role("button", name="Edit invoice default").click()
    page.get_by_label("Config", exact=True).fill('{"list": {"columns": ["number"]}}')
    page.get_by_role("button", name="Save UI config").click()
    page.get_by_role("status").filter(has_text="UI config saved.").wait_for()
    ui.screenshot("ui-configs")
    ui.assert_clean()
    config = ui_server.ok("GET", f"/api/{app}/_ui/config/invoice", token)["data"]
    assert config["config"] == {"list": {"columns": ["number"]}}


def test_export_then_import_into_another_app(ui: UiPage, ui_server: Api) -> None:
    source, token = invoicing_app(ui_server)
    target = ui_server.new_app()
    ui.log_in_platform(f"/admin/apps/{source}/schema")
    page = ui.page
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the schema").click()
    exported = Path(info.value.path())
    document = json.loads(exported.read_text())
    assert [e["name"] for e in document["entities"]] == ["customer", "invoice", "item", "tag"]
    ui.goto(f"/admin/apps/{target}/schema")
    page.get_by_label("Schema document to import").set_input_files(
        files=[
            {"name": "schema.json", "mimeType": "application/json", "buffer": exported.read_bytes()}
        ]
    )
    report = page.get_by_role("status", name="Import report")
    report.wait_for()
    assert "Import completed" in report.inner_text()
    assert re.search(r"entities\s+4", report.inner_text())
    ui.screenshot("export-import")
    ui.assert_clean()
    names = [
        e["name"] for e in ui_server.ok("GET", f"/api/{target}/_admin/entities", token)["data"]
    ]
    assert names == ["customer", "invoice", "item", "tag"]
    # A second import of the same document skips what exists.
    page.get_by_label("Schema document to import").set_input_files(
        files=[
            {"name": "schema.json", "mimeType": "application/json", "buffer": exported.read_bytes()}
        ]
    )
    page.get_by_text("Skipped (already there):").wait_for()


def test_entity_editor_declares_indexes_and_shows_build_states(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    ui.log_in_platform(f"/admin/apps/{app}/entities/invoice")
    page = ui.page
    page.get_by_role("heading", name="Entity invoice").wait_for()
    page.get_by_label("Indexed (issued_on)").check()
    page.get_by_label("Count the total of every list page").uncheck()
    page.get_by_role("button", name="Add an index").click()
    index = page.get_by_role("group", name=re.compile(r"^Index 1\b"))
    # A json column is refused by the API; its message shows at that column.
    index.get_by_label("Index 1, column 1", exact=True).select_option("notes")
    # An index that `indexed: true` declares already is refused at that field's box.
    page.get_by_role("button", name="Add an index").click()
    page.get_by_label("Index 2, column 1", exact=True).select_option("issued_on")
    page.get_by_role("button", name="Save entity").click()
    column_error = index.locator(".field-error").first
    column_error.wait_for()
    assert "notes" in column_error.inner_text()
    issued_on = page.get_by_role("group", name="Field 6: issued_on")
    assert "indexes declares the same index" in issued_on.locator(".field-error").inner_text()
    page.get_by_role("button", name="Remove index 2").click()
    index.get_by_label("Index 1, column 1", exact=True).select_option("status")
    index.get_by_role("button", name="Add a column to index 1").click()
    index.get_by_label("Index 1, column 2", exact=True).select_option("issued_on")
    index.get_by_label("Index 1, column 2 direction").select_option("desc")
    page.get_by_role("button", name="Save entity").click()
    page.locator("ul.migration-notes").wait_for()
    # The build states are asked again until no build runs: both indexes end ready.
    states = page.locator("td.index-state")
    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('td.index-state')];"
        " return s.length === 2 && s.every((td) => td.innerText.trim() === 'ready'); }"
    )
    assert states.count() == 2
    assert index.locator(".pill").inner_text() == "ready"
    ui.screenshot("entity-indexes")
    ui.assert_clean(http_errors=True)
    answer = ui_server.ok("GET", f"/api/{app}/_admin/entities/invoice", token)["data"]
    definition = answer["definition"]
    assert definition["indexes"] == [{"fields": ["status", "-issued_on"], "unique": False}]
    assert definition["list_total"] is False
    assert next(f for f in definition["fields"] if f["name"] == "issued_on")["indexed"] is True
    built = {tuple(i["fields"]): i["state"] for i in answer["indexes"]}
    assert built == {("status", "-issued_on"): "ready", ("issued_on",): "ready"}
    # A unique index over duplicate values fails to build; the page follows it to `failed: ...`.
    for number in ("INV-1", "INV-2"):
        new_invoice(ui_server, app, token, number, status="paid", issued_on="2026-03-01")
    index.get_by_label("Index 1 is unique").check()
    page.get_by_role("button", name="Save entity").click()
    index.locator(".pill", has_text="failed").wait_for()
    assert "save the entity again to retry" in index.inner_text()
    states = ui_server.ok("GET", f"/api/{app}/_admin/entities/invoice", token)["data"]["indexes"]
    failed = next(i for i in states if i["fields"] == ["status", "-issued_on"])
    assert failed["unique"] is True and failed["state"].startswith("failed: ")
    assert failed["state"] in index.locator(".pill").inner_text()
    # With `list_total: false` the data browser's lists skip the count unless asked.
    page.get_by_role("link", name="Browse data").click()
    page.get_by_text("Total not counted; this is the last page (has_more: false)").wait_for()
    assert page.get_by_label("Skip the total", exact=False).is_checked()
    page.get_by_label("Skip the total", exact=False).uncheck()
    page.get_by_text("2 records").wait_for()
    assert "total=true" in page.url


def test_index_guidance_adds_the_suggested_index(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    new_invoice(ui_server, app, token, "INV-1", issued_on="2026-03-01")
    ui_server.ok("GET", f"/api/{app}/invoice?filter%5Bissued_on.gte%5D=2026-02-01", token)
    ui.log_in_platform(f"/admin/apps/{app}/index-guidance")
    page = ui.page
    page.get_by_role("heading", name="invoice").wait_for()
    assert "filter issued_on gte; sort id" in page.locator("tbody").inner_text()
    page.get_by_role("button", name="Add this index (issued_on) to invoice").click()
    page.get_by_text("Index (issued_on) added to").wait_for()
    # Once the index is built the shape is no longer reported; until then its row shows the build.
    page.locator("tbody .pill").or_(page.get_by_text("No list of the last hour needs")).wait_for()
    assert page.get_by_role("button", name="Add this index (issued_on) to invoice").count() == 0
    ui.screenshot("index-guidance")
    ui.assert_clean()
    answer = ui_server.ok("GET", f"/api/{app}/_admin/entities/invoice", token)["data"]
    assert answer["definition"]["indexes"] == [{"fields": ["issued_on"], "unique": False}]
    assert [i["fields"] for i in answer["indexes"]] == [["issued_on"]]


def test_data_browser_skips_the_total_and_pages_by_cursor(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    for n in range(1, 12):
        new_invoice(ui_server, app, token, f"INV-{n:02}")
    ui.log_in_platform(f"/admin/apps/{app}/data/invoice?sort=number&per_page=10")
    page = ui.page
    page.get_by_text("11 records").wait_for()
    page.get_by_label("Skip the total", exact=False).check()
    page.get_by_text("more records follow this page (has_more: true)", exact=False).wait_for()
    assert "total=false" in page.url
    page.get_by_role("button", name="Next page by cursor").click()
    page.get_by_text("this is the last page (has_more: false)", exact=False).wait_for()
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and rows.nth(0).locator("td").nth(1).inner_text() == "INV-11"
    assert "after=" in page.url
    ui.screenshot("data-browser-cursor")
    ui.assert_clean()
    query = f"/api/{app}/invoice?sort=number&per_page=10&total=false"
    first = ui_server.ok("GET", query, token)
    assert "total" not in first["meta"] and first["meta"]["has_more"] is True
    cursor = first["meta"]["next_cursor"]
    assert f"after={cursor}" in page.url.replace("%3D", "=")
    second = ui_server.ok("GET", f"{query}&after={cursor}", token)
    assert [r["number"] for r in second["data"]] == ["INV-11"]
    page.get_by_role("button", name="First page").click()
    page.get_by_text("more records follow this page", exact=False).wait_for()


def test_reject_a_step_and_filter_the_runs(ui: UiPage, ui_server: Api) -> None:
    app, token = invoicing_app(ui_server)
    flow = {
        "name": "send_check",
        "trigger": {"type": "state_change", "entity": "invoice", "field": "status", "to": "sent"},
        "context": {"record_id": "record.id", "number": "record.number"},
        "steps": [{"id": "check", "type": "approval", "on_approve": "end", "on_reject": "end"}],
    }
    workflow = ui_server.ok("POST", f"/api/{app}/_admin/workflows", token, flow)["data"]
    invoice = new_invoice(ui_server, app, token, "RJ-1", status="draft")
    ui.log_in_platform(f"/admin/apps/{app}/approvals")
    page = ui.page
    page.get_by_text("Nothing waits for an approval.").wait_for()
    ui_server.ok("PUT", f"/api/{app}/invoice/{invoice['id']}", token, {"status": "sent"})
    # The instance reaches its approval step in the background, after the write commits; the
    # page asks again every few seconds, so it shows up without a reload.
    page.get_by_role("heading", name="send_check: check").wait_for(timeout=20_000)
    page.get_by_label("Comment on send_check check").fill("Wrong customer")
    page.get_by_role("button", name="Reject").click()
    page.get_by_role("status").filter(has_text="Rejected: send_check is now completed").wait_for()
    page.get_by_text("Nothing waits for an approval.").wait_for()
    ui.assert_clean()
    [run] = ui_server.ok("GET", f"/api/{app}/_admin/workflows/{workflow['id']}/instances", token)[
        "data"
    ]
    assert [(h["step"], h["status"], h.get("comment")) for h in run["history"]] == [
        ("check", "rejected", "Wrong customer")
    ]
    ui.goto(f"/admin/apps/{app}/workflows/{workflow['id']}/instances?status=running")
    page.get_by_text("No runs with status running.").wait_for()
    page.get_by_label("Status").select_option("completed")
    page.locator("tbody a").first.click()
    page.get_by_role("heading", name="Workflow send_check").wait_for()
    assert "check: rejected" in page.locator("ol.history").inner_text()
