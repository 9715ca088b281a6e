"""The kernel's two metadata kinds: entities (`_entities`) and relations (`_relations`), addressed
by name, whose saves also migrate the app's tables.

They run on the generic admin runner (`engine.admin`): one transaction under the app's metadata
lock, validated against the metadata as stored *now*, the metadata row, the DDL and
`NOTIFY rocket_metadata` committing together. A failed migration leaves the metadata unchanged,
and other instances hear about the change only once it is real. What the migrator did
differently from the literal metadata (a required column added as nullable, a table renamed...)
is logged and answered in `meta.migration`.

Unlike the other kinds, a PUT replaces the definition (the URL's name wins over the body's), and
both kinds check a body completely before looking up its row.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Final, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from rocketd.db import declared_indexes
from rocketd.db.migrator import migrate_entity, migrate_relation
from rocketd.engine.admin import (
    AdminCall,
    Change,
    MetadataKind,
    Row,
    Screened,
)
from rocketd.engine.admin import load_registry as load_registry
from rocketd.engine.signals import send_signal
from rocketd.errors import Conflict, InvalidPayload
from rocketd.logging import get_logger
from rocketd.metadata.consistency import entity_problems_in, relation_problems_in
from rocketd.metadata.model import Entity, Relation
from rocketd.metadata.parse import parse_entity, parse_relation
from rocketd.metadata.registry import Registry
from rocketd.timestamps import iso_utc

log = get_logger("rocketd.engine.metadata_admin")

__all__ = [
    "ENTITIES",
    "KERNEL_KINDS",
    "RELATIONS",
    "insert_entity",
    "insert_relation",
    "load_registry",
]


def _require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidPayload("Invalid JSON body")
    return body


_Named = TypeVar("_Named", Entity, Relation)


class _NamedKind(MetadataKind[_Named]):
    """What entities and relations share: rows keyed by `name`, a definition column, and the
    409 for a name that is taken, checked before the other problems."""

    key_column = "name"
    list_order = ("name",)
    put_merges = False
    import_key_columns = ("name",)

    def deleted_json(self, key: Any) -> dict[str, Any]:
        return {"name": key, "deleted": True}

    def export_json(self, row: Row) -> Any:
        return row["definition"]

    def export_item(self, item: _Named) -> Any:
        return item.to_json()  # what is stored as the definition

    def raw_label(self, raw: object) -> str | None:
        return str(raw.get("name")) if isinstance(raw, Mapping) else None


class EntityKind(_NamedKind[Entity]):
    name = "entities"
    path = "entities"
    table = "_entities"
    label = "Entity"
    columns = ("table_name", "definition")
    export_columns = ("definition",)

    def parse(self, body: object, call: AdminCall) -> Entity:
        return parse_entity(_require_object(body))

    def check_body(self, body: Mapping[str, Any], raw_key: str, call: AdminCall) -> None:
        parse_entity({**_require_object(body), "name": raw_key})

    def parse_update(self, body: Mapping[str, Any], stored: Row, call: AdminCall) -> Entity:
        return parse_entity({**body, "name": stored["name"]})  # the URL's name wins

    def problems_in(self, registry: Registry, item: Entity, stored: Row | None) -> list[str]:
        return entity_problems_in(registry, item, replacing=stored["name"] if stored else None)

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return entity_row_json(row)

    def saved_json(self, item: Entity, row: Row) -> Any:
        return item.to_json()

    async def validate(self, change: Change, item: Entity) -> None:
        if change.stored is None and await self.fetch(change.conn, item.name) is not None:
            raise Conflict(f"Entity already exists: {item.name}")
        await super().validate(change, item)

    async def insert(self, change: Change, item: Entity) -> Row:
        notes = await insert_entity(change.conn, item)
        _record_notes(change, item.name, notes)
        return {}

    async def update_row(self, change: Change, item: Entity) -> Row:
        registry = await change.registry()
        await change.conn.execute(
            "update _entities set table_name = %s, definition = %s, updated_at = now()"
            " where name = %s",
            (item.table, Jsonb(item.to_json()), change.key),
        )
        old = registry.entity(change.key)
        notes = await migrate_entity(
            change.conn, old, item, fk_columns=_fk_columns(registry, item.name)
        )
        notes += await _want_indexes(change.conn, item, old)
        _record_notes(change, item.name, notes)
        return {}

    async def delete_row(self, change: Change) -> bool:
        """Forget the entity and its relations; its table (and data) stay (contract), its
        declared indexes go."""
        if await self.fetch(change.conn, change.key, for_update=True) is None:
            return False
        name = change.key
        await change.conn.execute(
            "delete from _relations where source = %s or target = %s", (name, name)
        )
        await change.conn.execute("delete from _entities where name = %s", (name,))
        await declared_indexes.forget_entity(change.conn, name)
        await send_signal(change.conn, declared_indexes.SIGNAL)
        return True

    # The admin answers show each entity's declared indexes and their builds (`indexes`).
    async def fetch(
        self, conn: AsyncConnection[Any], key: Any, *, for_update: bool = False
    ) -> Row | None:
        if for_update:
            return await super().fetch(conn, key, for_update=True)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_WITH_STATES + sql.SQL(" where e.name = %s"), (key,))
        return await cur.fetchone()

    async def list_rows(self, conn: AsyncConnection[Any]) -> list[Row]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_WITH_STATES + sql.SQL(" order by e.name"))
        return await cur.fetchall()

    # import: an item without a name or table is skipped, an existing name too (unparsed)
    def screen(self, where: str, raw: object) -> Screened | None:
        if not isinstance(raw, Mapping):
            return Screened("problem", "must be an object")
        if not raw.get("name") or not raw.get("table"):
            return Screened("skip", f"{where} (no name or table)")
        return None

    def raw_key(self, raw: object) -> Hashable | None:
        return (raw.get("name"),) if isinstance(raw, Mapping) else None

    def key_of(self, item: Entity) -> Hashable:
        return (item.name,)

    def problem_label(self, raw: object, item: Entity) -> str:
        return item.name

    def extend(self, registry: Registry, item: Entity) -> Registry:
        return registry.with_entity(item)


class RelationKind(_NamedKind[Relation]):
    name = "relations"
    path = "relations"
    table = "_relations"
    label = "Relation"
    columns = ("source", "target", "definition")
    export_columns = ("definition",)

    def parse(self, body: object, call: AdminCall) -> Relation:
        return parse_relation(_require_object(body))

    def check_body(self, body: Mapping[str, Any], raw_key: str, call: AdminCall) -> None:
        parse_relation({**_require_object(body), "name": raw_key})

    def parse_update(self, body: Mapping[str, Any], stored: Row, call: AdminCall) -> Relation:
        return parse_relation({**body, "name": stored["name"]})

    def problems_in(self, registry: Registry, item: Relation, stored: Row | None) -> list[str]:
        return relation_problems_in(registry, item, replacing=stored["name"] if stored else None)

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return relation_row_json(row)

    def saved_json(self, item: Relation, row: Row) -> Any:
        return item.to_json()

    async def validate(self, change: Change, item: Relation) -> None:
        if change.stored is None and await self.fetch(change.conn, item.name) is not None:
            raise Conflict(f"Relation already exists: {item.name}")
        await super().validate(change, item)

    async def insert(self, change: Change, item: Relation) -> Row:
        await insert_relation(change.conn, await change.registry(), item)
        return {}

    async def update_row(self, change: Change, item: Relation) -> Row:
        registry = await change.registry()
        await _save_relation(change.conn, item, insert=False)
        # Unlike upstream, an update that turns a relation into many-to-many gets its join table.
        await migrate_relation(
            change.conn, registry.without_relation(change.key).with_relation(item), item
        )
        return {}

    # A relation's delete is the default one: its join table (and rows) stay (contract).

    def screen(self, where: str, raw: object) -> Screened | None:
        if not isinstance(raw, Mapping):
            return Screened("problem", "must be an object")
        if not raw.get("name"):
            return Screened("skip", f"{where} (no name)")
        return None

    def raw_key(self, raw: object) -> Hashable | None:
        return (raw.get("name"),) if isinstance(raw, Mapping) else None

    def key_of(self, item: Relation) -> Hashable:
        return (item.name,)

    def problem_label(self, raw: object, item: Relation) -> str:
        return item.name

    def extend(self, registry: Registry, item: Relation) -> Registry:
        return registry.with_relation(item)


_WITH_STATES: Final = sql.SQL("select e.*, {} as index_builds from _entities e").format(
    declared_indexes.STATES_COLUMN.format(sql.Identifier("e"))
)

ENTITIES: Final = EntityKind()
RELATIONS: Final = RelationKind()
KERNEL_KINDS: Final[tuple[MetadataKind[Any], ...]] = (ENTITIES, RELATIONS)


def entity_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "name": row["name"],
        "table_name": row["table_name"],
        "definition": row["definition"],
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }
    if row.get("index_builds"):  # only entities that declare indexes (contract shape otherwise)
        out["indexes"] = row["index_builds"]
    return out


def relation_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "source": row["source"],
        "target": row["target"],
        "definition": row["definition"],
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


def _fk_columns(registry: Registry, entity_name: str) -> set[str]:
    """Columns of the entity's table that relations use as foreign keys (they keep an index)."""
    return {
        r.target_key
        for r in registry.relations_to(entity_name)
        if not r.many_to_many and r.target_key
    }


def _record_notes(change: Change, entity: str, notes: Sequence[str]) -> None:
    """Migration notes go to the answer's `meta.migration` and to the log."""
    if notes:
        change.migration.extend(notes)
        log.info(
            "entity migrated differently from its definition",
            app=change.call.app_name,
            entity=entity,
            notes=list(notes),
        )


async def insert_entity(conn: AsyncConnection[Any], entity: Entity) -> list[str]:
    """Store a validated new entity and create its table, in the caller's transaction; the
    migrator's notes."""
    await conn.execute(
        "insert into _entities (name, table_name, definition) values (%s, %s, %s)",
        (entity.name, entity.table, Jsonb(entity.to_json())),
    )
    notes = await migrate_entity(conn, None, entity)
    return notes + await _want_indexes(conn, entity, None)


async def _want_indexes(
    conn: AsyncConnection[Any], entity: Entity, old: Entity | None
) -> list[str]:
    """Record the entity's declared indexes and wake a builder once the change commits (they
    are built outside this transaction: `db.declared_indexes`); notes naming the indexes the
    change adds and drops, for `meta.migration`."""
    await declared_indexes.record_wanted(conn, entity)
    await send_signal(conn, declared_indexes.SIGNAL)
    return declared_indexes.change_notes(old, entity)


async def insert_relation(
    conn: AsyncConnection[Any], registry: Registry, relation: Relation
) -> None:
    """Store a validated new relation and create what it needs (join table, FK index), in the
    caller's transaction; `registry` holds the entities it connects."""
    await _save_relation(conn, relation, insert=True)
    await migrate_relation(conn, registry.with_relation(relation), relation)


async def _save_relation(conn: AsyncConnection[Any], relation: Relation, *, insert: bool) -> None:
    params = (relation.source, relation.target, Jsonb(relation.to_json()), relation.name)
    if insert:
        await conn.execute(
            "insert into _relations (source, target, definition, name) values (%s, %s, %s, %s)",
            params,
        )
    else:
        await conn.execute(
            "update _relations set source = %s, target = %s, definition = %s,"
            " updated_at = now() where name = %s",
            params,
        )
