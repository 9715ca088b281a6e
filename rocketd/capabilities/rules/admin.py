"""The rules kind (`_rules`), and the snapshot's RuleBook loader.

Rules run on the generic admin runner (`engine.admin`): every change is validated (expressions
and patterns compiled when saved, C4) against the entities and relations as stored now, in one
transaction under the app's metadata lock, and commits with `NOTIFY rocket_metadata`, so every
instance reloads its snapshot (and its RuleBook). A PUT keeps the stored value of every key it
omits (C28). `load_rule_book` builds the snapshot's book from the stored rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import replace
from typing import Any, Final

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from rocketd.capabilities.rules.model import Rule, RuleBook, new_rule_problems_in, parse_rule
from rocketd.engine.admin import AdminCall, MetadataKind, Row, raw_text
from rocketd.errors import ErrorDetail
from rocketd.json_encoding import encode
from rocketd.metadata.registry import Registry


async def load_rule_book(conn: AsyncConnection[Any], registry: Registry) -> RuleBook:
    """The RuleBook of the stored rows (invalid ones skipped and listed in `problems`)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("select * from _rules order by entity, priority, id")
    return RuleBook.build(registry, await cur.fetchall())


def canonical_json(value: Any) -> bytes:
    """One spelling of a JSON value (keys sorted): how definitions are compared on import."""
    return encode(value, option=orjson.OPT_SORT_KEYS)  # integers beyond 64 bits too (jsonb)


class RuleKind(MetadataKind[Rule]):
    name = "rules"
    path = "rules"
    table = "_rules"
    label = "Rule"
    columns = ("entity", "hook", "type", "definition", "priority", "active")
    list_order = ("entity", "priority", "created_at", "id")
    export_order = ("entity", "priority", "created_at", "hook", "type", sql.SQL("definition::text"))
    # An imported rule is new unless one with the same entity, hook, type and definition exists.
    import_key_columns = ("entity", "hook", "type", "definition")

    def parse(self, body: object, call: AdminCall) -> Rule:
        return parse_rule(body)

    def problems_in(self, registry: Registry, item: Rule, stored: Row | None) -> list[ErrorDetail]:
        return new_rule_problems_in(registry, item)

    def values(self, item: Rule) -> tuple[Any, ...]:
        return (
            item.entity,
            item.hook,
            item.type,
            Jsonb(dict(item.raw_definition)),
            item.priority,
            item.active,
        )

    def saved_json(self, item: Rule, row: Row) -> Any:
        return replace(item, id=str(row["id"])).to_json()

    def row_key(self, row: Mapping[str, Any]) -> Hashable:
        return (row["entity"], row["hook"], row["type"], canonical_json(row["definition"]))

    def key_of(self, item: Rule) -> Hashable:
        return (item.entity, item.hook, item.type, canonical_json(dict(item.raw_definition)))

    def raw_label(self, raw: object) -> str:
        return raw_text(raw, "entity", "type")

    def problem_label(self, raw: object, item: Rule) -> str:
        return f"{item.entity}/{item.type}"

    def skip_label(self, raw: object, item: Rule | None) -> str:
        return f"{item.entity}/{item.hook}/{item.type}" if item else self.raw_label(raw)


RULES: Final = RuleKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (RULES,)
