"""The five record operations of the data API, each one transaction.

This is where the pieces meet: the read path (`query`), the write planner and executor
(`writes`), deletes with cascades (`deletes`), the pipeline stages of other capabilities
(`write_stages`: rules, state machines, ...), and database-error mapping. Every function takes the
AppSnapshot the request started with and the caller.

Order of a write: plan (parse, split, field validation: pure, before BEGIN) -> BEGIN -> lock the
stored row (update) -> before_write stages -> parent and nested SQL -> after_write stages ->
COMMIT -> re-read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from rocketd.auth.principal import Principal
from rocketd.engine import query, write_stages, writes
from rocketd.engine.deletes import delete_record
from rocketd.engine.snapshot import AppSnapshot
from rocketd.errors import NotFound, UnknownEntity
from rocketd.metadata.model import Entity
from rocketd.metadata.registry import Registry


def require_entity(registry: Registry, name: str) -> Entity:
    entity = registry.entity(name)
    if entity is None:
        raise UnknownEntity(f"Unknown entity: {name}")
    return entity


def _not_found(entity: Entity, raw_id: str) -> NotFound:
    return NotFound(f"{entity.name} with id {raw_id} not found")


async def list_page(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    params: Mapping[str, str],
    *,
    max_per_page: int,
    default_per_page: int,
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    spec = query.parse_list_query(
        registry, entity, params, max_per_page=max_per_page, default_per_page=default_per_page
    )
    async with pool.connection() as conn:
        rows, total = await query.list_records(conn, registry, entity, spec)
    return {
        "data": rows,
        "meta": {"page": spec.page, "per_page": spec.per_page, "total": total},
    }


async def get_one(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    raw_id: str,
    include: str | None,
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    includes = query.parse_includes(registry, entity, include, strict=True)
    async with pool.connection() as conn:
        return await query.get_record(conn, registry, entity, raw_id, includes)


async def create(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    plan = writes.plan_create(registry, entity, body)  # fully validated before BEGIN
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                plan = await write_stages.before_write(
                    conn, snapshot, principal, entity, "create", plan, None
                )
                pk = await writes.execute_create(conn, registry, plan)
                record = await query.get_record_by_pk(conn, registry, entity, pk)
                await write_stages.after_write(
                    conn, snapshot, principal, entity, "create", record, None
                )
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc
    return record


async def update(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    raw_id: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    plan = writes.plan_update(registry, entity, body)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                stored = await query.fetch_record(conn, registry, entity, raw_id, for_update=True)
                if stored is None:
                    raise _not_found(entity, raw_id)
                pk = stored[entity.primary_key.field]
                plan = await write_stages.before_write(
                    conn, snapshot, principal, entity, "update", plan, stored
                )
                await writes.execute_update(conn, registry, plan, pk)
                record = await query.get_record_by_pk(conn, registry, entity, pk)
                await write_stages.after_write(
                    conn, snapshot, principal, entity, "update", record, stored
                )
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc
    return record


async def delete(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    raw_id: str,
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                stored = await query.fetch_record(conn, registry, entity, raw_id, for_update=True)
                if stored is None:
                    raise _not_found(entity, raw_id)
                await write_stages.before_delete(conn, snapshot, principal, entity, stored)
                await delete_record(conn, registry, entity, stored)
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc
    return {"id": raw_id}
