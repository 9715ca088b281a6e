"""Admin CRUD of `_webhooks` and reads/retry of `_webhook_logs`.

Changes follow the rules_admin pattern: one transaction under the app's metadata advisory lock,
committed with `NOTIFY rocket_metadata` so every instance reloads its snapshot (and its
WebhookBook). A PUT applies the POST defaults for omitted keys (the spec's recommendation).
Header values that look secret and are not `{{env...}}` templates are redacted in log output.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.webhooks.model import (
    ENV_TEMPLATE,
    Webhook,
    WebhookBook,
    parse_webhook,
)
from rocketd.capabilities.webhooks.outbox import SIGNAL
from rocketd.engine.metadata_admin import _iso, _lock, _notify
from rocketd.engine.signals import send_signal
from rocketd.errors import ErrorDetail, NotFound, ValidationFailed

LOG_LIMIT: Final = 200
SECRET_NAME: Final = re.compile(r"auth|key|secret|token|password|signature|cookie", re.I)
LOG_FIELDS: Final = (
    "id",
    "webhook_id",
    "entity",
    "hook",
    "url",
    "method",
    "request_headers",
    "request_body",
    "response_status",
    "response_body",
    "status",
    "attempt",
    "max_attempts",
    "next_retry_at",
    "error",
    "idempotency_key",
    "created_at",
    "updated_at",
    "source",
    "duration_ms",
)


async def load_webhook_book(conn: AsyncConnection[Any]) -> WebhookBook:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("select * from _webhooks order by entity, hook, created_at, id")
    return WebhookBook.build(await cur.fetchall())


def _row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "entity": row["entity"],
        "hook": row["hook"],
        "url": row["url"],
        "method": row["method"],
        "headers": row["headers"] or {},
        "condition": row["condition"] or "",
        "async": row["async"],
        "retry": row["retry"] or {},
        "active": row["active"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _row_id(raw_id: str, label: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"{label} not found: {raw_id}") from None


async def _fetch(conn: AsyncConnection[Any], row_id: uuid.UUID) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("select * from _webhooks where id = %s", (row_id,))
    return await cur.fetchone()


def _values(hook: Webhook) -> tuple[Any, ...]:
    return (
        hook.entity,
        hook.hook,
        hook.url,
        hook.method,
        Jsonb(dict(hook.headers)),
        hook.condition,
        hook.is_async,
        Jsonb(hook.retry.to_json()),
        hook.active,
    )


async def list_webhooks(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _webhooks order by entity, hook, created_at, id")
        return [_row_json(r) for r in await cur.fetchall()]


async def get_webhook(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    row_id = _row_id(raw_id, "Webhook")
    async with pool.connection() as conn:
        row = await _fetch(conn, row_id)
    if row is None:
        raise NotFound(f"Webhook not found: {raw_id}")
    return _row_json(row)


async def create_webhook(
    pool: AsyncConnectionPool[Any], app_name: str, body: object, env_prefix: str
) -> dict[str, Any]:
    hook = parse_webhook(body, env_prefix)
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "insert into _webhooks (entity, hook, url, method, headers, condition, async, retry,"
            " active) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning *",
            _values(hook),
        )
        row = await cur.fetchone()
        await _notify(conn, app_name)
    assert row is not None
    return _row_json(row)


async def update_webhook(
    pool: AsyncConnectionPool[Any], app_name: str, raw_id: str, body: object, env_prefix: str
) -> dict[str, Any]:
    row_id = _row_id(raw_id, "Webhook")
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select id from _webhooks where id = %s for update", (row_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"Webhook not found: {raw_id}")
        hook = parse_webhook(body, env_prefix)
        await cur.execute(
            "update _webhooks set entity = %s, hook = %s, url = %s, method = %s, headers = %s,"
            " condition = %s, async = %s, retry = %s, active = %s, updated_at = now()"
            " where id = %s returning *",
            (*_values(hook), row_id),
        )
        row = await cur.fetchone()
        await _notify(conn, app_name)
    assert row is not None
    return _row_json(row)


async def delete_webhook(pool: AsyncConnectionPool[Any], app_name: str, raw_id: str) -> None:
    row_id = _row_id(raw_id, "Webhook")
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = await conn.execute("delete from _webhooks where id = %s returning id", (row_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"Webhook not found: {raw_id}")
        await _notify(conn, app_name)


# --------------------------------------------------------------------------------------- logs


def redact_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Secret-looking literal header values become "***"; `{{env.NAME}}` templates stay."""
    out: dict[str, Any] = {}
    for name, value in (headers or {}).items():
        literal = isinstance(value, str) and ENV_TEMPLATE.sub("", value).strip()
        out[name] = "***" if SECRET_NAME.search(name) and literal else value
    return out


def _log_json(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in LOG_FIELDS:
        value = row[name]
        if name in ("id", "webhook_id"):
            value = None if value is None else str(value)
        elif name in ("next_retry_at", "created_at", "updated_at"):
            value = _iso(value)
        elif name == "request_headers":
            value = redact_headers(value)
        out[name] = value
    return out


async def list_logs(
    pool: AsyncConnectionPool[Any], params: Mapping[str, str]
) -> list[dict[str, Any]]:
    where: list[str] = []
    args: list[Any] = []
    webhook_id = params.get("webhook_id")
    if webhook_id:
        try:
            args.append(uuid.UUID(webhook_id))
        except ValueError:
            raise ValidationFailed(
                "webhook_id must be a UUID", [ErrorDetail("webhook_id must be a UUID")]
            ) from None
        where.append("webhook_id = %s")
    for name in ("status", "entity"):
        if params.get(name):
            where.append(f"{name} = %s")
            args.append(params[name])
    query = "select * from _webhook_logs"
    if where:
        query += " where " + " and ".join(where)
    query += f" order by created_at desc, id desc limit {LOG_LIMIT}"
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query.encode(), args)  # built from constants only
        return [_log_json(r) for r in await cur.fetchall()]


async def get_log(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    row_id = _row_id(raw_id, "Webhook log")
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _webhook_logs where id = %s", (row_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"Webhook log not found: {raw_id}")
    return _log_json(row)


async def retry_log(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    """Due now again (attempt not reset); the dispatcher is woken at once."""
    row_id = _row_id(raw_id, "Webhook log")
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select status from _webhook_logs where id = %s for update", (row_id,))
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"Webhook log not found: {raw_id}")
        if row["status"] not in ("failed", "retrying"):
            message = "Can only retry failed or retrying webhook logs"
            raise ValidationFailed(message, [ErrorDetail(message)])
        await cur.execute(
            "update _webhook_logs set status = 'retrying', next_retry_at = now(),"
            " updated_at = now() where id = %s returning id, webhook_id, entity, hook, url,"
            " method, status, attempt, max_attempts, next_retry_at, updated_at",
            (row_id,),
        )
        updated = await cur.fetchone()
        await send_signal(conn, SIGNAL)
    assert updated is not None
    return {
        **updated,
        "id": str(updated["id"]),
        "webhook_id": None if updated["webhook_id"] is None else str(updated["webhook_id"]),
        "next_retry_at": _iso(updated["next_retry_at"]),
        "updated_at": _iso(updated["updated_at"]),
    }
