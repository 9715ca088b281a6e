"""The upstream project's example schemas (`../shared/upstream-examples`), read in place from the
shared folder beside the checkout and not copied into the project (that folder's README asks so).

Tests that read them carry the `upstream_examples` mark. When the folder is absent they fail,
saying so, rather than skip: a green run has exercised them. A clone without `../shared`
leaves them out on purpose with `ROCKET_TEST_WITHOUT_SHARED=1` (see tests/conftest.py), and
pytest reports them as deselected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT

UPSTREAM_EXAMPLES = ROOT.parent / "shared" / "upstream-examples"
NAMES = ("content-management", "employee-management")
"""The example files, by name (a test checks the folder holds exactly these)."""
OPT_OUT = "ROCKET_TEST_WITHOUT_SHARED"

upstream_examples = pytest.mark.upstream_examples


def example_path(name: str) -> Path:
    path = UPSTREAM_EXAMPLES / f"{name}.json"
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: this test needs ../shared/upstream-examples beside the checkout"
            f" (set {OPT_OUT}=1 to deselect the tests that read it)",
            pytrace=False,
        )
    return path


def example(name: str) -> dict[str, Any]:
    """The parsed example schema `name` (one of NAMES)."""
    return dict(json.loads(example_path(name).read_text()))
