"""The admin UI's shell in a real browser: how it is served (CSP, caching, deep links), platform
and app login, token refresh, logout, the apps page, keyboard use, 390 px width."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest

from tests.support.admin_ui import APP_ADMIN_LOGIN, Api, UiPage

pytestmark = pytest.mark.e2e

SESSION_KEY = "rocketd-admin-session"


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def stored_session(ui: UiPage) -> dict[str, Any]:
    return json.loads(ui.page.evaluate(f"() => sessionStorage.getItem('{SESSION_KEY}')") or "{}")


def test_index_and_assets_headers(ui_server: Api) -> None:
    status, headers, body = fetch(ui_server.base + "/admin/apps/shop/entities")  # a deep link
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "no-cache" in headers["Cache-Control"]
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    match = re.search(rb'src="(/admin/static/([0-9a-f]+)/app\.js)"', body)
    assert match, body[:500]
    status, headers, script = fetch(ui_server.base + match.group(1).decode())
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert (
        "immutable" in headers["Cache-Control"] and "max-age=31536000" in headers["Cache-Control"]
    )
    assert headers["Content-Security-Policy"] == csp
    assert b"render(" in script
    # Another digest (a stale tab) or an unknown file is a 404, never the index.
    assert fetch(ui_server.base + "/admin/static/0123456789abcdef/app.js")[0] == 404
    assert fetch(ui_server.base + f"/admin/static/{match.group(2).decode()}/nope.js")[0] == 404


def test_platform_login_create_and_delete_app(ui: UiPage, ui_server: Api) -> None:
    ui.log_in_platform()
    page = ui.page
    page.get_by_role("heading", name="Apps").wait_for()
    name = f"uiapps{page.evaluate('() => Date.now()') % 10**8}"
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Display name").fill("Shop from the UI")
    page.get_by_role("button", name="Create app").click()
    page.get_by_role("status").filter(has_text=f"App {name} created").wait_for()
    row = page.get_by_role("row").filter(has_text=name)
    assert "Shop from the UI" in row.inner_text()
    token = ui_server.platform_token()
    assert ui_server.ok("GET", f"/api/_platform/apps/{name}", token)["data"]["display_name"] == (
        "Shop from the UI"
    )
    ui.screenshot("apps")
    ui.assert_clean()

    # Delete: only after typing the name.
    row.get_by_role("button", name="Delete…").click()
    confirm = page.get_by_role("button", name="Delete app")
    assert confirm.is_disabled()
    page.get_by_label(f"Type {name} to delete this app").fill(name[:-1])
    assert confirm.is_disabled()
    page.get_by_label(f"Type {name} to delete this app").fill(name)
    confirm.click()
    page.get_by_role("status").filter(has_text=f"App {name} deleted").wait_for()
    assert ui_server.call("GET", f"/api/_platform/apps/{name}", token)[0] == 404
    assert page.get_by_role("row").filter(has_text=name).count() == 0


def test_wrong_password_is_shown(ui: UiPage) -> None:
    ui.goto("/admin")
    ui.page.get_by_role("button", name="Log in").wait_for()
    ui.screenshot("login")
    ui.assert_accessible()
    ui.page.get_by_label("Email").fill("platform@localhost")
    ui.page.get_by_label("Password").fill("not the password")
    ui.page.get_by_role("button", name="Log in").click()
    alert = ui.page.get_by_role("alert")
    alert.wait_for()
    assert "Login failed" in alert.inner_text() and "UNAUTHORIZED" in alert.inner_text()
    ui.assert_clean(http_errors=True)  # the browser notes the 401 of the failed login


def test_deep_link_and_reload_keep_the_session(ui: UiPage, ui_server: Api) -> None:
    app = ui_server.new_app()
    ui.goto(f"/admin/apps/{app}/entities")
    ui.page.wait_for_url("**/admin/login?next=*")  # nobody signed in yet
    ui.page.get_by_label("Email").fill("platform@localhost")
    ui.page.get_by_label("Password").fill("changeme")
    ui.page.get_by_role("button", name="Log in").click()
    ui.page.get_by_role("heading", name="Entities").wait_for()
    assert ui.page.url.endswith(f"/admin/apps/{app}/entities")  # back where the link pointed
    ui.page.reload()
    ui.page.get_by_role("heading", name="Entities").wait_for()
    assert stored_session(ui)["platform"]["access_token"]
    assert ui.page.evaluate("() => localStorage.length") == 0  # sessionStorage only
    ui.page.go_back()  # history works: the login page, which sends a signed-in user on
    ui.page.go_forward()
    ui.page.get_by_role("heading", name="Entities").wait_for()
    # A link to no page: its own page, inside the frame, with a way back.
    ui.goto(f"/admin/apps/{app}/nowhere")
    ui.page.get_by_role("heading", name="Page not found").wait_for()
    assert f"/admin/apps/{app}/nowhere" in ui.page.locator("main").inner_text()
    ui.screenshot("not-found")
    ui.assert_clean()
    ui.page.get_by_role("link", name="Go to the apps").click()
    ui.page.get_by_role("heading", name="Apps").wait_for()


def test_expired_access_token_is_refreshed(ui: UiPage, ui_server: Api) -> None:
    app = ui_server.new_app()
    ui.log_in_platform()
    before = stored_session(ui)["platform"]
    # Spoil the access token as if it had expired: the next call gets a 401, refreshes, retries.
    ui.page.evaluate(
        "(key) => { const s = JSON.parse(sessionStorage.getItem(key));"
        " s.platform.access_token = 'expired'; sessionStorage.setItem(key, JSON.stringify(s)); }",
        SESSION_KEY,
    )
    ui.goto(f"/admin/apps/{app}/entities")
    ui.page.get_by_text("No entities yet").wait_for()
    after = stored_session(ui)["platform"]
    assert after["access_token"] != "expired"  # (may equal the old one: same claims, same second)
    assert after["refresh_token"] != before["refresh_token"]
    # The old refresh token was used up by the refresh.
    status, _ = ui_server.call(
        "POST", "/api/_platform/auth/refresh", body={"refresh_token": before["refresh_token"]}
    )
    assert status == 401
    ui.assert_clean(http_errors=True)  # the browser notes the 401 that caused the refresh


def test_app_login_and_logout(ui: UiPage, ui_server: Api) -> None:
    app = ui_server.new_app()
    page = ui.page
    ui.goto("/admin/login")
    page.get_by_label("An app's account").check()
    page.get_by_label("App", exact=True).fill(app)
    page.get_by_label("Email").fill(APP_ADMIN_LOGIN["email"])
    page.get_by_label("Password").fill(APP_ADMIN_LOGIN["password"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name=f"App {app}").wait_for()
    page.get_by_text("Signed in to this app as admin@localhost").wait_for()
    page.get_by_role("link", name="0 entities").wait_for()  # app routes answer with the app token
    session = stored_session(ui)
    assert session["platform"] is None and session["apps"][app]["refresh_token"]
    ui.screenshot("app-home")
    ui.assert_clean()
    refresh_token = session["apps"][app]["refresh_token"]
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("heading", name="rocketd admin").wait_for()
    assert "/admin/login" in page.url
    assert stored_session(ui) == {"platform": None, "apps": {}}
    # Logging out revoked the refresh token on the server.
    status, _ = ui_server.call(
        "POST", f"/api/{app}/auth/refresh", body={"refresh_token": refresh_token}
    )
    assert status == 401


def test_csp_blocks_an_inline_script(ui: UiPage) -> None:
    ui.goto("/admin/login")
    ui.page.get_by_role("button", name="Log in").wait_for()
    outcome = ui.page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener('securitypolicyviolation',
              (e) => resolve({blocked: e.violatedDirective, ran: Boolean(window.__inlineRan)}));
            const script = document.createElement('script');
            script.textContent = 'window.__inlineRan = true';
            document.head.appendChild(script);
            setTimeout(() => resolve({blocked: null, ran: Boolean(window.__inlineRan)}), 2000);
        })"""
    )
    assert outcome == {"blocked": "script-src-elem", "ran": False}


def wait_for_focus(page: Any, element_id: str) -> None:
    """Waits (up to Playwright's default timeout) until the element with this id has the focus:
    pages move the focus in an effect after they render, not within the key press."""
    page.wait_for_function("(id) => document.activeElement?.id === id", arg=element_id)


def test_keyboard_only_login_and_navigation(ui: UiPage, ui_server: Api) -> None:
    app = ui_server.new_app()
    page = ui.page
    ui.goto("/admin/login")
    page.get_by_role("button", name="Log in").wait_for()
    page.keyboard.press("Tab")  # the first control: the platform account radio
    wait_for_focus(page, "kind-platform")
    page.keyboard.press("Tab")  # the radio group is one stop: on to the email
    page.keyboard.type("platform@localhost")
    page.keyboard.press("Tab")
    page.keyboard.type("changeme")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Apps").wait_for()
    # The heading of the new page has the focus; the app's link is reachable with Tab once the
    # list has loaded.
    wait_for_focus(page, "page-title")
    page.get_by_role("link", name=app, exact=True).wait_for()
    # The server is shared by the package's tests, so the list holds every app they made (two
    # stops per row): Tab at most once per focusable element on the page.
    stops = page.evaluate(
        "() => document.querySelectorAll('a[href], button, input, select, textarea').length"
    )
    for _ in range(stops + 1):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == app:
            break
    else:
        pytest.fail("the app's link was not reachable with Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=f"App {app}").wait_for()
    # A destructive action by keyboard: the confirmation takes the focus, Enter submits it.
    page.go_back()
    row = page.get_by_role("row").filter(has_text=app)
    row.get_by_role("button", name="Delete…").focus()
    page.keyboard.press("Enter")
    wait_for_focus(page, f"confirm-{app}")
    page.keyboard.type(app)
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text=f"App {app} deleted").wait_for()
    token = ui_server.platform_token()
    assert ui_server.call("GET", f"/api/_platform/apps/{app}", token)[0] == 404


def test_usable_at_390px(browser: Any, ui_server: Api, screenshot_dir: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        ui = UiPage(context.new_page(), ui_server.base, screenshot_dir)
        app = ui_server.new_app()
        ui.log_in_platform(f"/admin/apps/{app}")
        ui.page.get_by_role("heading", name=f"App {app}").wait_for()
        ui.page.get_by_role("link", name="Entities", exact=True).click()
        ui.page.get_by_role("link", name="New entity").click()
        ui.page.get_by_label("Entity name").fill("note")
        ui.page.get_by_label("Table").fill("notes")
        ui.page.get_by_role("button", name="Create entity").click()
        ui.page.get_by_text("Entity created.").wait_for()
        assert ui.page.evaluate("() => document.documentElement.scrollWidth") <= 390
        ui.screenshot("narrow-390")
        ui.assert_clean()
        token = ui_server.platform_token()
        assert (
            ui_server.ok("GET", f"/api/{app}/_admin/entities/note", token)["data"]["name"] == "note"
        )
        # Wide content (tables, diagrams, the trace) scrolls inside its box, never the page.
        ui_server.ok("POST", f"/api/{app}/note", token, {})
        for section, heading in (
            ("data/note", "Data: note"),
            ("relations", "Relations"),
            ("events", "Events"),
            ("events/stats", "Event stats"),
        ):
            ui.goto(f"/admin/apps/{app}/{section}")
            ui.page.get_by_role("heading", name=heading, exact=True).wait_for()
            width = ui.page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, (section, width)
    finally:
        context.close()
