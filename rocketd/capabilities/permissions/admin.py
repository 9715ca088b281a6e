"""Saving permission policies (`_permissions`): validate, write and announce in one transaction.

The announcement is the app database's metadata notification (payload: the app name), delivered
at commit: every instance reloads its AppSnapshot, whose `permissions` part is these rows. The
route reloads this instance before answering, so the caller's next request already obeys the
change.

Rows (spec): `{"id", "entity", "action", "roles", "conditions", "created_at", "updated_at"}` plus
the additive `check` list (stored in the `checks` column). `conditions` and `check` are stored
as validated and normalised (`[]` rather than upstream's `null` when omitted). The entity is not
checked to exist, as the spec says; several policies per (entity, action) are allowed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.permissions.model import (
    Condition,
    PolicyFields,
    parse_policy_body,
    stored_conditions,
)
from rocketd.db import notify
from rocketd.db.notify import MetadataChanged
from rocketd.errors import NotFound

_SELECT: Final = (
    "select id, entity, action, roles, conditions, checks, created_at, updated_at from _permissions"
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _conditions_json(raw: Any) -> list[Any]:
    """A stored conditions column as JSON: what was written, `[]` for upstream's null."""
    return raw if isinstance(raw, list) else []


def permission_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "entity": row["entity"],
        "action": row["action"],
        "roles": list(row["roles"] or []),
        "conditions": _conditions_json(row["conditions"]),
        "check": _conditions_json(row["checks"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _stored_fields(row: Mapping[str, Any]) -> PolicyFields:
    return PolicyFields(
        entity=str(row["entity"]),
        action=str(row["action"]),
        roles=tuple(row["roles"] or ()),
        conditions=stored_conditions(row["conditions"]),
        check=stored_conditions(row["checks"]),
    )


def _jsonb(conditions: tuple[Condition, ...]) -> Jsonb:
    return Jsonb([c.to_json() for c in conditions])


def _uuid(raw: str) -> uuid.UUID | None:
    if len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def _not_found(raw_id: str) -> NotFound:
    shown = raw_id if len(raw_id) <= 100 else raw_id[:100] + "..."
    return NotFound(f"Permission not found: {shown}")


async def _notify(conn: AsyncConnection[Any], app_name: str) -> None:
    await notify.send(conn, MetadataChanged(app_name))


async def list_permissions(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " order by entity, action, created_at, id")
        return [permission_json(r) for r in await cur.fetchall()]


async def get_permission(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    key = _uuid(raw_id)
    if key is None:
        raise _not_found(raw_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where id = %s", (key,))
        row = await cur.fetchone()
    if row is None:
        raise _not_found(raw_id)
    return permission_json(row)


async def create_permission(
    pool: AsyncConnectionPool[Any], app_name: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    fields = parse_policy_body(body)
    async with pool.connection() as conn, conn.transaction():
        row = await insert_permission(conn, fields)
        await _notify(conn, app_name)
    return permission_json(row)


async def insert_permission(conn: AsyncConnection[Any], fields: PolicyFields) -> dict[str, Any]:
    """Insert a validated policy in the caller's transaction; the new row."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "insert into _permissions (entity, action, roles, conditions, checks)"
        " values (%s, %s, %s, %s, %s)"
        " returning id, entity, action, roles, conditions, checks, created_at, updated_at",
        (
            fields.entity,
            fields.action,
            list(fields.roles),
            _jsonb(fields.conditions),
            _jsonb(fields.check),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def update_permission(
    pool: AsyncConnectionPool[Any], app_name: str, raw_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """PUT: sent keys replace, absent keys keep the stored values (upstream-gaps C28)."""
    key = _uuid(raw_id)
    if key is None:
        parse_policy_body(body, PolicyFields("x", "read"))  # bad bodies are 400/422 first
        raise _not_found(raw_id)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where id = %s for update", (key,))
        stored = await cur.fetchone()
        if stored is None:
            parse_policy_body(body, PolicyFields("x", "read"))
            raise _not_found(raw_id)
        fields = parse_policy_body(body, _stored_fields(stored))
        # Absent lists keep the stored JSON exactly (even what this release cannot read).
        conditions = (
            _jsonb(fields.conditions) if "conditions" in body else Jsonb(stored["conditions"])
        )
        check = _jsonb(fields.check) if "check" in body else Jsonb(stored["checks"])
        await cur.execute(
            "update _permissions set entity = %s, action = %s, roles = %s, conditions = %s,"
            " checks = %s, updated_at = now() where id = %s"
            " returning id, entity, action, roles, conditions, checks, created_at, updated_at",
            (
                fields.entity,
                fields.action,
                list(fields.roles),
                conditions,
                check,
                key,
            ),
        )
        row = await cur.fetchone()
        await _notify(conn, app_name)
    assert row is not None
    return permission_json(row)


async def delete_permission(
    pool: AsyncConnectionPool[Any], app_name: str, raw_id: str
) -> dict[str, Any]:
    key = _uuid(raw_id)
    if key is None:
        raise _not_found(raw_id)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("delete from _permissions where id = %s returning id", (key,))
        if await cur.fetchone() is None:
            raise _not_found(raw_id)
        await _notify(conn, app_name)
    return {"id": str(key), "deleted": True}
