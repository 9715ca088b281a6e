"""AppSnapshot: everything a request needs to know about an app's metadata, immutable.

The AppActor builds one on every reload and swaps it in one assignment; a request keeps the
snapshot it started with. Each capability adds its own frozen part here (entities and relations
now; rules, state machines and permissions as they land), loaded in `load_snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from rocketd.engine.metadata_admin import load_registry
from rocketd.metadata.registry import EMPTY_REGISTRY, Registry


@dataclass(frozen=True)
class AppSnapshot:
    registry: Registry

    @property
    def problems(self) -> tuple[str, ...]:
        """Invalid metadata skipped while loading (logged by the AppActor)."""
        return self.registry.problems


EMPTY_SNAPSHOT = AppSnapshot(registry=EMPTY_REGISTRY)


async def load_snapshot(conn: AsyncConnection[Any]) -> AppSnapshot:
    registry = await load_registry(conn)
    return AppSnapshot(registry=registry)
