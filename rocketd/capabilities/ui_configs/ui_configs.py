"""UI configs (`_ui_configs`): opaque per-entity JSON for admin and client UIs, unique on
(`entity`, `scope`). Admin CRUD plus the read routes every authenticated user may call.

Not part of the snapshot (nothing on the request path depends on them), so changes need no
NOTIFY: every read goes to the table.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection, errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.engine.metadata_admin import load_registry
from rocketd.errors import Conflict, ErrorDetail, NotFound, ValidationFailed

DEFAULT_SCOPE: Final = "default"
_SELECT: Final = "select id, entity, scope, config, created_at, updated_at from _ui_configs"


@dataclass(frozen=True)
class UiConfig:
    entity: str
    scope: str
    config: Any


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "entity": row["entity"],
        "scope": row["scope"],
        "config": row["config"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _fail(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, [ErrorDetail(message, field, "required")])


def parse_ui_config(body: Mapping[str, Any]) -> UiConfig:
    """`{"entity", "scope"?, "config"?}`: entity a non-empty string, scope a non-empty string
    (default "default"), config any JSON value (default {})."""
    entity = body.get("entity")
    if not isinstance(entity, str) or not entity.strip():
        raise _fail("entity is required", "entity")
    scope = body.get("scope")
    if scope is None or scope == "":
        scope = DEFAULT_SCOPE
    if not isinstance(scope, str):
        raise ValidationFailed(
            "scope must be a string", [ErrorDetail("must be a string", "scope", "type")]
        )
    config = body.get("config")
    return UiConfig(entity, scope, {} if config is None else config)


async def entity_problem(conn: AsyncConnection[Any], item: UiConfig) -> str | None:
    """The entity must exist, except pseudo-entities whose names start with `_` (e.g. `_app`)."""
    if item.entity.startswith("_"):
        return None
    registry = await load_registry(conn)
    return None if registry.entity(item.entity) is not None else f"entity not found: {item.entity}"


def _row_id(raw_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"UI config not found: {raw_id[:100]}") from None


def _conflict(item: UiConfig) -> Conflict:
    return Conflict(f"UI config already exists for entity {item.entity} scope {item.scope}")


async def list_all(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " order by entity, scope")
        return [row_json(r) for r in await cur.fetchall()]


async def list_default(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where scope = %s order by entity", (DEFAULT_SCOPE,))
        return [row_json(r) for r in await cur.fetchall()]


async def get_default(pool: AsyncConnectionPool[Any], entity: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where entity = %s and scope = %s", (entity, DEFAULT_SCOPE))
        row = await cur.fetchone()
    return None if row is None else row_json(row)


async def get(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    key = _row_id(raw_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where id = %s", (key,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"UI config not found: {raw_id}")
    return row_json(row)


async def create(pool: AsyncConnectionPool[Any], body: Mapping[str, Any]) -> dict[str, Any]:
    item = parse_ui_config(body)
    async with pool.connection() as conn, conn.transaction():
        problem = await entity_problem(conn, item)
        if problem is not None:
            raise ValidationFailed(problem, [ErrorDetail(problem, "entity", "exists")])
        cur = conn.cursor(row_factory=dict_row)
        try:
            async with conn.transaction():
                await cur.execute(
                    "insert into _ui_configs (entity, scope, config) values (%s, %s, %s)"
                    " returning id, entity, scope, config, created_at, updated_at",
                    (item.entity, item.scope, Jsonb(item.config)),
                )
        except errors.UniqueViolation:
            raise _conflict(item) from None
        row = await cur.fetchone()
    assert row is not None
    return row_json(row)


async def update(
    pool: AsyncConnectionPool[Any], raw_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    key = _row_id(raw_id)
    item = parse_ui_config(body)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        try:
            async with conn.transaction():
                await cur.execute(
                    "update _ui_configs set entity = %s, scope = %s, config = %s,"
                    " updated_at = now() where id = %s"
                    " returning id, entity, scope, config, created_at, updated_at",
                    (item.entity, item.scope, Jsonb(item.config), key),
                )
        except errors.UniqueViolation:
            raise _conflict(item) from None
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"UI config not found: {raw_id}")
    return row_json(row)


async def delete(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    key = _row_id(raw_id)
    async with pool.connection() as conn:
        cur = await conn.execute("delete from _ui_configs where id = %s returning id", (key,))
        if await cur.fetchone() is None:
            raise NotFound(f"UI config not found: {raw_id}")
    return {"id": str(key), "deleted": True}


async def upsert(conn: AsyncConnection[Any], item: UiConfig) -> None:
    """Import: insert or replace the config of (entity, scope)."""
    await conn.execute(
        "insert into _ui_configs (entity, scope, config) values (%s, %s, %s)"
        " on conflict (entity, scope) do update set config = excluded.config, updated_at = now()",
        (item.entity, item.scope, Jsonb(item.config)),
    )
