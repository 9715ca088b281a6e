"""AppSnapshot: everything a request needs to know about an app's metadata, immutable.

The AppActor builds one on every reload and swaps it in one assignment; a request keeps the
snapshot it started with. Each capability adds its own frozen part here (entities and relations
now; rules, state machines and permissions as they land), loaded in `load_snapshot`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from rocketd.capabilities.permissions.access import (
    EMPTY_PERMISSIONS,
    PermissionSet,
    load_permissions,
)
from rocketd.capabilities.rules.admin import load_rule_book
from rocketd.capabilities.rules.model import EMPTY_RULE_BOOK, RuleBook
from rocketd.capabilities.webhooks.admin import load_webhook_book
from rocketd.capabilities.webhooks.model import EMPTY_WEBHOOKS, WebhookBook
from rocketd.capabilities.workflows.admin import (
    EMPTY_WORKFLOW_BOOK,
    WorkflowBook,
    load_workflow_book,
)
from rocketd.db.introspect import column_types, index_leading_columns
from rocketd.engine.metadata_admin import load_registry
from rocketd.metadata.registry import EMPTY_REGISTRY, Registry


@dataclass(frozen=True)
class AppSnapshot:
    registry: Registry
    rules: RuleBook = EMPTY_RULE_BOOK  # rules and state machines by entity
    permissions: PermissionSet = EMPTY_PERMISSIONS  # `_permissions` by (entity, action)
    webhooks: WebhookBook = EMPTY_WEBHOOKS  # active `_webhooks` by (entity, hook)
    workflows: WorkflowBook = EMPTY_WORKFLOW_BOOK  # valid `_workflows`, compiled
    # table -> columns leading a btree index, read at load time (list pages choose their SQL
    # by it; an index created by hand is seen from the next reload on).
    sort_indexes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # table -> ((column, type name), ...) as the database has them at load time: list pages
    # have PostgreSQL write the records' JSON only for columns of the types rocketd expects.
    column_types: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def indexed_columns(self, table: str) -> frozenset[str]:
        return self.sort_indexes.get(table, frozenset())

    def table_columns(self, table: str) -> tuple[tuple[str, str], ...]:
        return self.column_types.get(table, ())

    @property
    def problems(self) -> tuple[str, ...]:
        """Invalid metadata skipped while loading (logged by the AppActor)."""
        return (
            self.registry.problems
            + self.rules.problems
            + self.webhooks.problems
            + self.workflows.problems
        )


EMPTY_SNAPSHOT = AppSnapshot(registry=EMPTY_REGISTRY)


async def load_snapshot(conn: AsyncConnection[Any]) -> AppSnapshot:
    registry = await load_registry(conn)
    rules = await load_rule_book(conn, registry)
    permissions = await load_permissions(conn)
    webhooks = await load_webhook_book(conn)
    workflows = await load_workflow_book(conn, registry)
    tables = [entity.table for entity in registry.entities.values()]
    sort_indexes = await index_leading_columns(conn, tables)
    types = await column_types(conn, tables)
    return AppSnapshot(
        registry=registry,
        rules=rules,
        permissions=permissions,
        webhooks=webhooks,
        workflows=workflows,
        sort_indexes=sort_indexes,
        column_types={table: tuple(sorted(columns.items())) for table, columns in types.items()},
    )
