"""Scenario sets. A scenario takes a fresh `Bench` and returns a `ScenarioResult`.

Add a set by writing a module with a `SCENARIOS` mapping and listing it in `SETS`; the set name
is the prefix of its result files.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Bench
from bench.report import ScenarioResult
from bench.scenarios import (
    data_api,
    files,
    foundation,
    large_tables,
    permissions,
    rules,
    webhooks,
    workflows,
)

Scenario = Callable[[Bench], ScenarioResult]

SETS: dict[str, dict[str, Scenario]] = {
    "foundation": foundation.SCENARIOS,
    "data-api": data_api.SCENARIOS,
    "permissions": permissions.SCENARIOS,
    "workflows": workflows.SCENARIOS,
    "files": files.SCENARIOS,
    "webhooks": webhooks.SCENARIOS,
    "rules": rules.SCENARIOS,
    "large-tables": large_tables.SCENARIOS,
}
