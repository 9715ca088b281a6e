"""The five record operations of the data API, each one transaction.

This is where the pieces meet: the read path (`query`), the write planner and executor
(`writes`), deletes with cascades (`deletes`), and database-error mapping. Every function takes the
Registry snapshot the request started with. Later capabilities (permissions, rules, state machines,
webhooks, audit) plug in here as stages around the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from rocketd.auth.principal import Principal
from rocketd.engine import query, writes
from rocketd.engine.deletes import delete_record
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
    registry: Registry,
    principal: Principal,
    entity_name: str,
    params: Mapping[str, str],
    *,
    max_per_page: int,
    default_per_page: int,
) -> dict[str, Any]:
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
    registry: Registry,
    principal: Principal,
    entity_name: str,
    raw_id: str,
    include: str | None,
) -> dict[str, Any]:
    entity = require_entity(registry, entity_name)
    includes = query.parse_includes(registry, entity, include, strict=True)
    async with pool.connection() as conn:
        return await query.get_record(conn, registry, entity, raw_id, includes)


async def create(
    pool: AsyncConnectionPool[Any],
    registry: Registry,
    principal: Principal,
    entity_name: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    entity = require_entity(registry, entity_name)
    plan = writes.plan_create(registry, entity, body)  # fully validated before BEGIN
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                pk = await writes.execute_create(conn, registry, plan)
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc
        return await query.get_record_by_pk(conn, registry, entity, pk)


async def update(
    pool: AsyncConnectionPool[Any],
    registry: Registry,
    principal: Principal,
    entity_name: str,
    raw_id: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    entity = require_entity(registry, entity_name)
    plan = writes.plan_update(registry, entity, body)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                stored = await query.fetch_record(conn, registry, entity, raw_id, for_update=True)
                if stored is None:
                    raise _not_found(entity, raw_id)
                pk = stored[entity.primary_key.field]
                await writes.execute_update(conn, registry, plan, pk)
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc
        return await query.get_record_by_pk(conn, registry, entity, pk)


async def delete(
    pool: AsyncConnectionPool[Any],
    registry: Registry,
    principal: Principal,
    entity_name: str,
    raw_id: str,
) -> dict[str, Any]:
    entity = require_entity(registry, entity_name)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                stored = await query.fetch_record(conn, registry, entity, raw_id, for_update=True)
                if stored is None:
                    raise _not_found(entity, raw_id)
                await delete_record(conn, registry, entity, stored)
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc
    return {"id": raw_id}
