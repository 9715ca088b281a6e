"""The platform account page: who is signed in, changing the password and the email (each
confirmed with the current password), checked through the platform routes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.admin_ui import PLATFORM_LOGIN, Api, UiPage

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a much longer passphrase 9"


def test_change_password_and_email(browser: Any, own_server: Api, screenshot_dir: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    try:
        ui = UiPage(context.new_page(), own_server.base, screenshot_dir)
        ui.log_in_platform("/admin/account")
        page = ui.page
        page.get_by_role("heading", name="Platform account").wait_for()
        page.locator("dl.facts").get_by_text("platform@localhost").wait_for()

        page.get_by_label("Current password", exact=True).fill("not it")
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password, again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change the password").click()
        page.get_by_role("alert").wait_for()
        page.get_by_label("Current password", exact=True).fill(PLATFORM_LOGIN["password"])
        page.get_by_role("button", name="Change the password").click()
        page.get_by_text("Password changed. Other sessions").wait_for()
        status, _ = own_server.call("POST", "/api/_platform/auth/login", body=PLATFORM_LOGIN)
        assert status == 401
        login = {"email": "platform@localhost", "password": NEW_PASSWORD}
        token = own_server.ok("POST", "/api/_platform/auth/login", body=login)["data"][
            "access_token"
        ]

        page.get_by_label("New email").fill("root@example.com")
        page.get_by_label("Current password (to confirm)").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change the email").click()
        page.get_by_text("The account's email is now root@example.com.").wait_for()
        page.locator("header").get_by_text("root@example.com").wait_for()
        me = own_server.ok("GET", "/api/_platform/auth/me", token)["data"]
        assert me["email"] == "root@example.com"
        ui.screenshot("account")
        ui.assert_clean(http_errors=True)
    finally:
        context.close()
