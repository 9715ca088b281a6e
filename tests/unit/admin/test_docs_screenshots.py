"""docs/admin-ui.md, the screenshots committed under docs/images/admin-ui/ and the ones the browser
tests take stay in step: each page of the app navigation has a row in the pages table, each
screenshot a test takes is committed and shown on the page, and nothing else is."""

from __future__ import annotations

import re

from tests.support.paths import ROOT

DOC = ROOT / "docs" / "admin-ui.md"
IMAGES = ROOT / "docs" / "images" / "admin-ui"
BROWSER_TESTS = ROOT / "tests" / "e2e" / "admin_ui"
APP_JS = ROOT / "rocketd" / "admin" / "static" / "app.js"


def taken() -> set[str]:
    names: set[str] = set()
    for test in BROWSER_TESTS.glob("test_*.py"):
        names.update(re.findall(r"\.screenshot\(\"([a-z0-9-]+)\"\)", test.read_text()))
    return names


def test_every_screenshot_the_tests_take_is_committed_and_shown() -> None:
    names = taken()
    assert len(names) > 30  # the pattern still finds the tests' calls
    shown = set(re.findall(r"\]\(images/admin-ui/([a-z0-9-]+)\.png\)", DOC.read_text()))
    committed = {png.stem for png in IMAGES.glob("*.png")}
    assert sorted(names - shown) == [], "taken by a test, not shown in docs/admin-ui.md"
    assert sorted(shown - names) == [], "shown in docs/admin-ui.md, taken by no test"
    assert sorted(names - committed) == [], "taken by a test, not committed"
    assert sorted(committed - names) == [], "committed, taken by no test"


def test_every_section_of_the_app_navigation_has_a_row() -> None:
    sections = re.search(r"APP_SECTIONS = \[(.*?)\];", APP_JS.read_text(), re.S)
    assert sections
    labels = re.findall(r"label: '([^']+)'", sections.group(1))
    assert "Index guidance" in labels
    rows = set(re.findall(r"^\| ([^|]+?) \|", DOC.read_text(), re.M))
    assert [label for label in labels if label not in rows] == []
