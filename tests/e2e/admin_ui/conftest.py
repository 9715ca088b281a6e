"""Browser tests of the admin UI: ONE `rocketd serve` and ONE headless Debian chromium (driven by
Playwright for Python, never a downloaded browser) shared by every test of this package; each test
makes its own app, so tests do not see each other's data.

Chromium is installed with apt when `/usr/bin/chromium` is missing (idempotent). Screenshots go
to a temporary folder, or to `docs/images/admin-ui/` with `ROCKET_UI_SCREENSHOTS=docs` (how the
committed ones in docs/admin-ui.md are made).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin_ui import CHROMIUM, CHROMIUM_ARGS, Api, UiPage, ensure_chromium
from tests.support.databases import app_databases, drop_databases, dsn_for, unique_name
from tests.support.paths import ROOT
from tests.support.processes import Instance, free_port

# The shared server collects one app per test; with the default pools (5 connections each, kept
# for 300 s) twenty apps would hold most of the server's max_connections (100 here) while other
# tests need some. Small pools that close after a few idle seconds keep the whole package at a
# handful of connections; no UI test depends on the pool size.
SHARED_SERVER_POOLS = {"ROCKET_APP_POOL_SIZE": "3", "ROCKET_APP_POOL_IDLE_SECONDS": "5"}


@contextmanager
def running_server(pg_dsn: str) -> Iterator[Api]:
    """A `rocketd serve` on a management database of its own, dropped afterwards."""
    management = unique_name("rkt_ui_")
    log_dir = Path(tempfile.mkdtemp(prefix="rocketd-ui-"))
    instance = Instance(
        dsn_for(pg_dsn, management), free_port(), log_dir / "rocketd.log", SHARED_SERVER_POOLS
    )
    api = Api(instance.base)
    try:
        deadline = time.monotonic() + 90
        while True:
            if instance.proc.poll() is not None:
                raise AssertionError((log_dir / "rocketd.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(instance.base + "/ready", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "rocketd did not become ready"
            time.sleep(0.2)
        yield api
    finally:
        instance.stop()
        drop_databases(pg_dsn, [*app_databases(pg_dsn, management), management])
        shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def ui_server(pg_dsn: str) -> Iterator[Api]:
    """The server every UI test shares."""
    with running_server(pg_dsn) as api:
        yield api


@pytest.fixture
def own_server(pg_dsn: str) -> Iterator[Api]:
    """A server of its own, for a test that changes the seeded platform account (which every
    other test signs in with, and whose password cannot be set back to the seeded one)."""
    with running_server(pg_dsn) as api:
        yield api


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One browser for the package's tests, closed when they are done: Playwright's sync API
    marks an event loop as running in the main thread while it is open, which would make every
    later async test fail with "Runner.run() cannot be called from a running event loop"."""
    ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Iterator[Path]:
    if os.environ.get("ROCKET_UI_SCREENSHOTS") == "docs":
        target = ROOT / "docs" / "images" / "admin-ui"
        target.mkdir(parents=True, exist_ok=True)
        yield target
        return
    target = Path(tempfile.mkdtemp(prefix="rocketd-ui-shots-"))
    yield target
    shutil.rmtree(target, ignore_errors=True)


@pytest.fixture
def ui(browser: Any, ui_server: Api, screenshot_dir: Path) -> Iterator[UiPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield UiPage(page, ui_server.base, screenshot_dir)
    finally:
        context.close()
