"""The schema page's "Compare with a file": the chosen document goes to `POST /_admin/diff` and the
page shows what an import would add, what differs and what only the app has; nothing changes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.admin_ui import Api, UiPage, invoicing_app

pytestmark = pytest.mark.e2e


def as_file(document: Any, name: str = "schema.json") -> dict[str, Any]:
    return {"name": name, "mimeType": "application/json", "buffer": json.dumps(document).encode()}


def test_compare_with_a_file_shows_adds_changes_and_what_only_the_app_has(
    ui: UiPage, ui_server: Api
) -> None:
    app, token = invoicing_app(ui_server)
    document = ui_server.ok("GET", f"/api/{app}/_admin/export", token)["data"]
    invoice = next(e for e in document["entities"] if e["name"] == "invoice")
    next(f for f in invoice["fields"] if f["name"] == "total")["type"] = "float"
    invoice["indexes"] = [{"fields": ["status", "-issued_on"], "unique": False}]
    document["relations"] = [r for r in document["relations"] if r["name"] != "invoice_tags"]
    document["ui_configs"] = [{"entity": "_app", "config": {"title": "Invoicing"}}]
    before = ui_server.ok("GET", f"/api/{app}/_admin/export", token)["data"]

    ui.log_in_platform(f"/admin/apps/{app}/schema")
    page = ui.page
    page.get_by_label("Schema document to compare").set_input_files(
        files=[as_file(document, "changed.json")]
    )
    result = page.get_by_role("region", name="Comparison")
    result.wait_for()
    text = result.inner_text()
    assert "changed.json differs from this app." in text and "Nothing was written." in text
    summary = page.get_by_role("table", name="Comparison summary").inner_text()
    assert re.search(r"Added\s+1\b", summary) and re.search(r"Changed\s+1\b", summary)
    assert re.search(r"Only in the app\s+1\b", summary)

    added = page.get_by_role("table", name="Added: in the document, not in the app")
    assert "UI configs\t_app/default\tcreates it" in added.inner_text()
    changed = page.get_by_role("table", name="Changed: in both, different").inner_text()
    assert re.search(r"fields\[total\]\.type\s+decimal\s+float\s+leaves it", changed), changed
    assert "indexes" in changed and "not set" in changed and '"-issued_on"' in changed
    assert "leaves it (these changes are not applied)" in changed
    only = page.get_by_role(
        "table", name="Only in the app: not in the document (an import keeps them)"
    )
    assert re.search(r"Relations\s+invoice_tags", only.inner_text())
    ui.screenshot("schema-diff")
    ui.assert_clean()
    assert (
        ui_server.ok("GET", f"/api/{app}/_admin/export", token)["data"]["entities"]
        == (before["entities"])
    )  # nothing written

    # The app's own export: nothing to do.
    page.get_by_label("Schema document to compare").set_input_files(
        files=[as_file(before, "same.json")]
    )
    page.get_by_text("same.json matches this app: importing it would change nothing.").wait_for()
    assert page.get_by_role("table", name="Changed: in both, different").count() == 0

    # Names come from the document: shown as text, never as markup.
    hostile = "_<img src=x onerror=alert(1)>"  # a pseudo-entity name: anything after "_"
    page.get_by_label("Schema document to compare").set_input_files(
        files=[as_file({"version": 1, "ui_configs": [{"entity": hostile}]}, "hostile.json")]
    )
    added = page.get_by_role("table", name="Added: in the document, not in the app")
    added.wait_for()
    assert f"UI configs\t{hostile}/default\tcreates it" in added.inner_text()
    assert result.locator("img").count() == 0

    # A document import would reject: its problems, as an import would list them.
    broken = {"version": 1, "relations": [{"name": "ghosts", "type": "one_to_many",
              "source": "customer", "target": "ghost", "target_key": "customer_id"}]}  # fmt: skip
    page.get_by_label("Schema document to compare").set_input_files(
        files=[as_file(broken, "broken.json")]
    )
    error = page.get_by_text("Not compared")
    error.wait_for()
    assert "ghost" in page.locator(".error-box").inner_text()
    ui.assert_clean(http_errors=True)
