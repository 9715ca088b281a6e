"""Validation rules (`_rules`): field, expression and computed rules on before_write,
after_write and before_delete, evaluated in the write transaction.

Public API for other capabilities: `RULE_BOOK` (the snapshot part: the active rules by entity).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from rocketd.capabilities.rules import routes
from rocketd.capabilities.rules.admin import KINDS, load_rule_book
from rocketd.capabilities.rules.model import RuleBook
from rocketd.capabilities.rules.stages import RULE_BOOK, STAGES
from rocketd.extensions import Capability, SnapshotPart
from rocketd.metadata.registry import Registry


async def _load(conn: AsyncConnection[Any], registry: Registry) -> RuleBook:
    return await load_rule_book(conn, registry)


CAPABILITY = Capability(
    name="rules",
    snapshot_parts=(SnapshotPart(RULE_BOOK, _load, lambda book: book.problems),),
    stages=STAGES,
    kinds=KINDS,
    add_routes=routes.add_routes,
)

__all__ = ["CAPABILITY", "RULE_BOOK"]
