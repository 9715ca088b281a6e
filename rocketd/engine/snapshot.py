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
from rocketd.engine.permissions import EMPTY_PERMISSIONS, PermissionSet, load_permissions
from rocketd.engine.rules_admin import load_rule_book
from rocketd.metadata.registry import EMPTY_REGISTRY, Registry
from rocketd.metadata.rules import EMPTY_RULE_BOOK, RuleBook


@dataclass(frozen=True)
class AppSnapshot:
    registry: Registry
    rules: RuleBook = EMPTY_RULE_BOOK  # rules and state machines by entity
    permissions: PermissionSet = EMPTY_PERMISSIONS  # `_permissions` by (entity, action)

    @property
    def problems(self) -> tuple[str, ...]:
        """Invalid metadata skipped while loading (logged by the AppActor)."""
        return self.registry.problems + self.rules.problems


EMPTY_SNAPSHOT = AppSnapshot(registry=EMPTY_REGISTRY)


async def load_snapshot(conn: AsyncConnection[Any]) -> AppSnapshot:
    registry = await load_registry(conn)
    rules = await load_rule_book(conn, registry)
    permissions = await load_permissions(conn)
    return AppSnapshot(registry=registry, rules=rules, permissions=permissions)
