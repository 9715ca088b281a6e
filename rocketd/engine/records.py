"""The five record operations of the data API, each one transaction.

This is where the pieces meet: the read path (`query`), the write planner and executor
(`writes`), deletes with cascades (`deletes`), the pipeline stages of other capabilities
(`write_stages`: rules, state machines, ...), and database-error mapping. Every function takes the
AppSnapshot the request started with and the caller.

Order of a write: permission grant (403) -> file ids in `file` fields resolved (404) -> plan (parse, split, field validation: pure, before
BEGIN) -> BEGIN -> lock the stored row (update) -> permission conditions on the stored row (403)
-> before_write stages -> parent and nested SQL (each nested child checked for its own entity and
action) -> re-read -> permission `check` on the resulting row (403, rolled back) -> after_write
stages -> COMMIT.

Permissions (`rocketd.engine.permissions`): reads get the caller's row filter as an extra WHERE on
the list, its count, get-by-id and every include, so a row the caller may not see is absent
(get-by-id: 404, like a missing id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from rocketd.auth.principal import Principal
from rocketd.engine import (
    commit_batch,
    files,
    patterns,
    permissions,
    query,
    signals,
    write_stages,
    writes,
)
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


@asynccontextmanager
async def _write_transaction(
    pool: AsyncConnectionPool[Any], entity: Entity
) -> AsyncIterator[AsyncConnection[Any]]:
    """One write transaction; a database error anywhere in it becomes the contract's error.

    Every write takes one, plain or not: a plain write as a lone autocommit statement is about
    1.8x faster, but adding a rule, webhook or workflow would then halve an entity's write
    throughput at once (docs/benchmarks.md, "The single-statement path"). The outbox rows and
    workflow instances a write adds are sent with its COMMIT (`commit_batch`). The regular
    expressions of its rules share one time budget (`patterns.time_budget`), nested records
    included."""
    async with pool.connection() as conn:
        try:
            async with commit_batch.write_transaction(conn, signals.sender_for(pool).signal):
                with patterns.time_budget():
                    yield conn
        except psycopg.Error as exc:
            raise writes.map_database_error(exc, entity, "") from exc


async def _finish_write(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    access: permissions.Access,
    scope: permissions.Scope,
    plan: writes.WritePlan,
    row: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """After the SQL of a create (`stored` None) or update: the record (as the INSERT or UPDATE
    returned it; re-read when nested writes ran after it), the permission `check` list on it (403
    rolls back), the after_write stages."""
    entity = plan.entity
    action: write_stages.Action = "create" if stored is None else "update"
    record = await writes.written_record(conn, snapshot.registry, plan, row)
    access.check_result(scope, action, entity, record)
    await write_stages.after_write(conn, snapshot, principal, entity, action, record, stored)
    return record


async def _resolve_files(
    pool: AsyncConnectionPool[Any], registry: Registry, entity: Entity, body: dict[str, Any]
) -> dict[str, Any]:
    """File ids in `file` fields (and in nested children's) become the files' metadata before
    planning (404 for an id of no file of this app)."""
    if not files.has_file_fields(registry, entity):
        return body
    async with pool.connection() as conn:
        return await files.resolve_file_ids(conn, registry, entity, body)


@dataclass(frozen=True)
class ListPage:
    """One list answer: the records either as dicts (`records`) or as the wire JSON PostgreSQL
    wrote for each (`encoded`, a page without includes), and the paging meta."""

    meta: dict[str, int]
    records: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[bytes] | None = None


async def list_page(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    params: Mapping[str, str],
    *,
    max_per_page: int,
    default_per_page: int,
) -> ListPage:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    access = permissions.Access(snapshot.permissions, principal)
    grant = access.grant(entity.name, "read")
    spec = query.parse_list_query_cached(
        registry, entity, params, max_per_page=max_per_page, default_per_page=default_per_page
    )
    row_filter = access.read_filter(grant, entity)
    where, where_params = row_filter if row_filter is not None else (None, ())
    if spec.includes and not access.bypass:
        raw_include = dict(params.items()).get("include")  # the last value, as parsed
        spec = replace(spec, includes=access.readable_includes(spec.includes, raw_include))
    meta = {"page": spec.page, "per_page": spec.per_page}
    indexed = snapshot.indexed_columns(entity.table)
    async with pool.connection() as conn:
        if not spec.includes:
            answer = await query.list_records_json(
                conn,
                entity,
                spec,
                snapshot.table_columns(entity.table),
                extra_where=where,
                extra_params=where_params,
                indexed=indexed,
            )
            if answer is not None:
                return ListPage({**meta, "total": answer[1]}, encoded=answer[0])
        rows, total = await query.list_records(
            conn,
            registry,
            entity,
            spec,
            extra_where=where,
            extra_params=where_params,
            include_where=access.include_where(),
            indexed=indexed,
        )
    return ListPage({**meta, "total": total}, records=rows)


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
    access = permissions.Access(snapshot.permissions, principal)
    grant = access.grant(entity.name, "read")
    includes = access.readable_includes(
        query.parse_includes(registry, entity, include, strict=True), include
    )
    row_filter = access.read_filter(grant, entity)
    where, where_params = row_filter if row_filter is not None else (None, ())
    async with pool.connection() as conn:
        return await query.get_record(
            conn,
            registry,
            entity,
            raw_id,
            includes,
            extra_where=where,
            extra_params=where_params,
            include_where=access.include_where(),
        )


async def create(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    access = permissions.Access(snapshot.permissions, principal)
    scope = access.create_scope(access.grant(entity.name, "create"))
    body = write_stages.with_initial_states(snapshot, entity, body)
    body = await _resolve_files(pool, registry, entity, body)
    plan = writes.plan_create(registry, entity, body)  # fully validated before BEGIN
    async with _write_transaction(pool, entity) as conn:
        plan = await write_stages.before_write(
            conn, snapshot, principal, entity, "create", plan, None
        )
        row = await writes.execute_create(conn, registry, plan, access.guard())
        return await _finish_write(conn, snapshot, principal, access, scope, plan, row, None)


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
    access = permissions.Access(snapshot.permissions, principal)
    grant = access.grant(entity.name, "update")
    body = await _resolve_files(pool, registry, entity, body)
    plan = writes.plan_update(registry, entity, body)
    async with _write_transaction(pool, entity) as conn:
        stored = await query.fetch_record(conn, registry, entity, raw_id, for_update=True)
        if stored is None:
            raise _not_found(entity, raw_id)
        # Conditions hold on the row as stored and locked: no concurrent change between.
        scope = access.stored_scope(grant, entity, stored)
        pk = stored[entity.primary_key.field]
        plan = await write_stages.before_write(
            conn, snapshot, principal, entity, "update", plan, stored
        )
        row = await writes.execute_update(conn, registry, plan, pk, access.guard())
        return await _finish_write(
            conn, snapshot, principal, access, scope, plan, stored if row is None else row, stored
        )


async def delete(
    pool: AsyncConnectionPool[Any],
    snapshot: AppSnapshot,
    principal: Principal,
    entity_name: str,
    raw_id: str,
) -> dict[str, Any]:
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    access = permissions.Access(snapshot.permissions, principal)
    grant = access.grant(entity.name, "delete")
    async with _write_transaction(pool, entity) as conn:
        stored = await query.fetch_record(conn, registry, entity, raw_id, for_update=True)
        if stored is None:
            raise _not_found(entity, raw_id)
        access.stored_scope(grant, entity, stored)  # 403 unless a policy's conditions hold
        await write_stages.before_delete(conn, snapshot, principal, entity, stored)
        await delete_record(conn, registry, entity, stored)
        await write_stages.after_delete(conn, snapshot, principal, entity, stored)
    return {"id": raw_id}
