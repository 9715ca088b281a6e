"""Saving entity and relation metadata: validate, write, migrate and notify in one transaction.

Every change runs under a transaction-scoped advisory lock of the app database, so concurrent
admin edits (from this or another instance) are serialised, and it validates against the metadata
as stored *now* (read inside the lock), not against a possibly stale snapshot. The metadata row,
the DDL and `NOTIFY rocket_metadata` commit together: a failed migration leaves the metadata
unchanged, and other instances hear about the change only once it is real.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.db import notify
from rocketd.db.migrator import migrate_entity, migrate_relation
from rocketd.db.notify import MetadataChanged
from rocketd.errors import Conflict, InvalidPayload, NotFound
from rocketd.metadata.consistency import entity_problems_in, relation_problems_in
from rocketd.metadata.model import Entity, Relation
from rocketd.metadata.parse import (
    MetadataError,
    parse_entity,
    parse_relation,
)
from rocketd.metadata.registry import Registry

_LOCK_KEY = "rocketd:metadata"


async def lock_metadata(conn: AsyncConnection[Any]) -> None:
    """Take the app's metadata lock for the rest of the caller's transaction."""
    await _lock(conn)


async def notify_metadata(conn: AsyncConnection[Any], app_name: str) -> None:
    """Announce a metadata change (delivered at commit)."""
    await _notify(conn, app_name)


async def load_registry(conn: AsyncConnection[Any]) -> Registry:
    """Build a Registry from the metadata rows (invalid rows are skipped and listed)."""
    cur = await conn.execute("select name, definition from _entities order by name")
    entity_rows = await cur.fetchall()
    cur = await conn.execute("select name, definition from _relations order by name")
    relation_rows = await cur.fetchall()
    return Registry.build(
        [(r[0], r[1]) for r in entity_rows], [(r[0], r[1]) for r in relation_rows]
    )


async def _lock(conn: AsyncConnection[Any]) -> None:
    await conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_KEY,))


async def _notify(conn: AsyncConnection[Any], app_name: str) -> None:
    await notify.send(conn, MetadataChanged(app_name))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _with_url_name(body: object, name: str) -> object:
    """PUT bodies: the name in the URL wins over the one in the body."""
    if isinstance(body, dict):
        return {**body, "name": name}
    return body


def _require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidPayload("Invalid JSON body")
    return body


# ---------------------------------------------------------------------------------- entities


def entity_row_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "table_name": row["table_name"],
        "definition": row["definition"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


async def _list_rows(
    pool: AsyncConnectionPool[Any], table: str, render: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.SQL("select * from {} order by name").format(sql.Identifier(table)))
        return [render(r) for r in await cur.fetchall()]


async def _get_row(
    pool: AsyncConnectionPool[Any],
    table: str,
    name: str,
    render: Callable[[dict[str, Any]], dict[str, Any]],
    what: str,
) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("select * from {} where name = %s").format(sql.Identifier(table)), (name,)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{what} not found: {name}")
    return render(row)


async def list_entities(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    return await _list_rows(pool, "_entities", entity_row_json)


async def get_entity(pool: AsyncConnectionPool[Any], name: str) -> dict[str, Any]:
    return await _get_row(pool, "_entities", name, entity_row_json, "Entity")


def _fk_columns(registry: Registry, entity_name: str) -> set[str]:
    """Columns of the entity's table that relations use as foreign keys (they keep an index)."""
    return {
        r.target_key
        for r in registry.relations_to(entity_name)
        if not r.many_to_many and r.target_key
    }


def _check(problems: list[str]) -> None:
    if problems:
        raise MetadataError(problems)


async def create_entity(pool: AsyncConnectionPool[Any], app_name: str, body: object) -> Entity:
    entity = parse_entity(_require_object(body))
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        registry = await load_registry(conn)
        cur = await conn.execute("select 1 from _entities where name = %s", (entity.name,))
        if await cur.fetchone() is not None:
            raise Conflict(f"Entity already exists: {entity.name}")
        _check(entity_problems_in(registry, entity))
        await insert_entity(conn, entity)
        await _notify(conn, app_name)
    return entity


async def insert_entity(conn: AsyncConnection[Any], entity: Entity) -> None:
    """Store a validated new entity and create its table, in the caller's transaction."""
    await conn.execute(
        "insert into _entities (name, table_name, definition) values (%s, %s, %s)",
        (entity.name, entity.table, Jsonb(entity.to_json())),
    )
    await migrate_entity(conn, None, entity)


async def update_entity(
    pool: AsyncConnectionPool[Any], app_name: str, name: str, body: object
) -> Entity:
    entity = parse_entity(_with_url_name(_require_object(body), name))
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        registry = await load_registry(conn)
        cur = await conn.execute(
            "select definition from _entities where name = %s for update", (name,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"Entity not found: {name}")
        old = registry.entity(name)
        _check(entity_problems_in(registry, entity, replacing=name))
        await conn.execute(
            "update _entities set table_name = %s, definition = %s, updated_at = now()"
            " where name = %s",
            (entity.table, Jsonb(entity.to_json()), name),
        )
        await migrate_entity(conn, old, entity, fk_columns=_fk_columns(registry, entity.name))
        await _notify(conn, app_name)
    return entity


async def delete_entity(pool: AsyncConnectionPool[Any], app_name: str, name: str) -> None:
    """Forget the entity and its relations; its table (and data) stay (contract)."""
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = await conn.execute("select 1 from _entities where name = %s for update", (name,))
        if await cur.fetchone() is None:
            raise NotFound(f"Entity not found: {name}")
        await conn.execute("delete from _relations where source = %s or target = %s", (name, name))
        await conn.execute("delete from _entities where name = %s", (name,))
        await _notify(conn, app_name)


# --------------------------------------------------------------------------------- relations


def relation_row_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "source": row["source"],
        "target": row["target"],
        "definition": row["definition"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


async def list_relations(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    return await _list_rows(pool, "_relations", relation_row_json)


async def get_relation(pool: AsyncConnectionPool[Any], name: str) -> dict[str, Any]:
    return await _get_row(pool, "_relations", name, relation_row_json, "Relation")


async def create_relation(pool: AsyncConnectionPool[Any], app_name: str, body: object) -> Relation:
    relation = parse_relation(_require_object(body))
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        registry = await load_registry(conn)
        cur = await conn.execute("select 1 from _relations where name = %s", (relation.name,))
        if await cur.fetchone() is not None:
            raise Conflict(f"Relation already exists: {relation.name}")
        _check(relation_problems_in(registry, relation))
        await insert_relation(conn, registry, relation)
        await _notify(conn, app_name)
    return relation


async def insert_relation(
    conn: AsyncConnection[Any], registry: Registry, relation: Relation
) -> None:
    """Store a validated new relation and create what it needs (join table, FK index), in the
    caller's transaction; `registry` holds the entities it connects."""
    await _save_relation(conn, relation, insert=True)
    await migrate_relation(conn, registry.with_relation(relation), relation)


async def update_relation(
    pool: AsyncConnectionPool[Any], app_name: str, name: str, body: object
) -> Relation:
    relation = parse_relation(_with_url_name(_require_object(body), name))
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        registry = await load_registry(conn)
        cur = await conn.execute("select 1 from _relations where name = %s for update", (name,))
        if await cur.fetchone() is None:
            raise NotFound(f"Relation not found: {name}")
        _check(relation_problems_in(registry, relation, replacing=name))
        await _save_relation(conn, relation, insert=False)
        # Unlike upstream, an update that turns a relation into many-to-many gets its join table.
        await migrate_relation(
            conn, registry.without_relation(name).with_relation(relation), relation
        )
        await _notify(conn, app_name)
    return relation


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


async def delete_relation(pool: AsyncConnectionPool[Any], app_name: str, name: str) -> None:
    """Forget the relation; a many-to-many join table (and its rows) stays (contract)."""
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = await conn.execute("delete from _relations where name = %s returning name", (name,))
        if await cur.fetchone() is None:
            raise NotFound(f"Relation not found: {name}")
        await _notify(conn, app_name)
