"""The admin UI's browser tests: Debian's chromium (installed with apt when missing), a small
synchronous API client for setting up and checking, and `UiPage`, one browser tab with the checks
every page test makes (console errors, foreign requests, axe-core)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import unique_name
from tests.support.paths import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_SOURCE = ROOT / "tests" / "support" / "vendor" / "axe.min.js"
HTTP_ERROR_NOTE = re.compile(
    r"Failed to load resource: the server responded with a status of 4\d\d"
)
PLATFORM_LOGIN = {"email": "platform@localhost", "password": "changeme"}
APP_ADMIN_LOGIN = {"email": "admin@localhost", "password": "changeme"}


def ensure_chromium() -> None:
    """Debian's chromium, installed with apt when missing (a no-op when it is there)."""
    if CHROMIUM.exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    if not CHROMIUM.exists():
        pytest.fail("chromium could not be installed with apt")


class Api:
    """A small synchronous client of the server's REST API, for setting up and for checking what
    the UI did."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            text = err.read()
            return err.code, json.loads(text) if text else None

    def ok(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        status, answer = self.call(method, path, token, body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def platform_token(self) -> str:
        return str(
            self.ok("POST", "/api/_platform/auth/login", body=PLATFORM_LOGIN)["data"][
                "access_token"
            ]
        )

    def new_app(self, prefix: str = "ui") -> str:
        name = unique_name(prefix)
        self.ok("POST", "/api/_platform/apps", self.platform_token(), {"name": name})
        return name


class UiPage:
    """One browser tab on the admin UI, with the checks every page test makes: no console errors,
    no request to anything but rocketd, and helpers for logging in, screenshots and axe."""

    def __init__(self, page: Any, base: str, shots: Path) -> None:
        self.page = page
        self.base = base
        self.shots = shots
        self.console_errors: list[str] = []
        self.foreign_requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))
        page.on("request", self._request)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request: Any) -> None:
        url = request.url
        if not (url.startswith(self.base) or url.startswith(("data:", "blob:"))):
            self.foreign_requests.append(url)

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def reload_until(self, locator: Any, timeout: float = 30.0) -> None:
        """Reloads the page until `locator` shows: for what the server does in the background
        (a workflow reaching its approval step, a webhook delivery failing), which a page shows
        when it is loaded again. Each load gets a few seconds to show it; no fixed pause."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        deadline = time.monotonic() + timeout
        while True:
            try:
                locator.first.wait_for(timeout=3_000)
                return
            except PlaywrightTimeout:
                if time.monotonic() > deadline:
                    raise
                self.page.reload()

    def log_in_platform(self, next_path: str = "/admin") -> None:
        self.goto(next_path)
        self.page.get_by_label("Email").fill(PLATFORM_LOGIN["email"])
        self.page.get_by_label("Password").fill(PLATFORM_LOGIN["password"])
        self.page.get_by_role("button", name="Log in").click()
        self.page.get_by_role("button", name="Log out").wait_for()

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def axe_violations(self) -> list[dict[str, Any]]:
        """Serious and critical axe-core findings on the page as it is now. axe is evaluated
        through the DevTools protocol, which the page's CSP does not govern."""
        if not self.page.evaluate("() => Boolean(window.axe)"):
            self.page.evaluate(AXE_SOURCE.read_text())
        result = self.page.evaluate(
            "() => axe.run(document, {resultTypes: ['violations']})"
            ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))"
        )
        return [v for v in result if v["impact"] in ("serious", "critical")]

    def assert_clean(self, http_errors: bool = False) -> None:
        """No console error (with `http_errors`, the browser's own notes of 4xx answers the test
        provoked on purpose are allowed), no foreign request, no serious axe finding."""
        errors = self.console_errors
        if http_errors:
            errors = [e for e in errors if not HTTP_ERROR_NOTE.match(e)]
        assert errors == [], errors
        assert self.foreign_requests == [], self.foreign_requests
        self.assert_accessible()

    def assert_accessible(self) -> None:
        violations = self.axe_violations()
        assert violations == [], violations


def invoicing_app(api: Api, prefix: str = "ui") -> tuple[str, str]:
    """A new app with the invoicing example imported through the API: (app name, platform token)."""
    name = api.new_app(prefix)
    token = api.platform_token()
    schema = json.loads((ROOT / "examples" / "invoicing.json").read_text())
    api.ok("POST", f"/api/{name}/_admin/import", token, schema)
    return name, token
