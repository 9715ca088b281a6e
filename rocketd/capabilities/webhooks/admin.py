"""The webhook kind (`_webhooks`), and the reads and retry of `_webhook_logs`.

Webhooks run on the generic admin runner (`engine.admin`): one transaction under the app's
metadata advisory lock, committed with `NOTIFY rocket_metadata` so every instance reloads its
snapshot (and its WebhookBook). Unlike most kinds, a PUT applies the POST defaults for omitted
keys (the spec's recommendation), and its row is looked up (404) before its body is read.
Header values that look secret and are not `{{env...}}` templates are redacted in log output.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Hashable, Mapping
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
from rocketd.engine.admin import AdminCall, MetadataKind, not_found, raw_text, row_uuid
from rocketd.engine.signals import send_signal
from rocketd.errors import ErrorDetail, ValidationFailed
from rocketd.metadata.registry import Registry
from rocketd.timestamps import iso_utc

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


class WebhookKind(MetadataKind[Webhook]):
    name = "webhooks"
    path = "webhooks"
    table = "_webhooks"
    label = "Webhook"
    columns = ("entity", "hook", "url", "method", "headers", "condition", "async", "retry",
               "active")  # fmt: skip
    list_order = ("entity", "hook", "created_at", "id")
    export_order = ("entity", "hook", "created_at", "url")
    put_merges = False  # a PUT applies the POST defaults for omitted keys (spec)
    needs_registry = False  # the admin route does not check the entity (import does)
    import_key_columns = ("entity", "hook", "url")

    def parse(self, body: object, call: AdminCall) -> Webhook:
        return parse_webhook(body, call.settings.webhooks.env_prefix)

    def values(self, item: Webhook) -> tuple[Any, ...]:
        return (
            item.entity,
            item.hook,
            item.url,
            item.method,
            Jsonb(dict(item.headers)),
            item.condition,
            item.is_async,
            Jsonb(item.retry.to_json()),
            item.active,
        )

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
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
            "created_at": iso_utc(row["created_at"]),
            "updated_at": iso_utc(row["updated_at"]),
        }

    # import: the entity must exist (the admin route does not check it); an item whose
    # (entity, hook, url) exists is skipped before it is parsed
    def import_problems_in(self, registry: Registry, item: Webhook) -> list[str]:
        if registry.entity(item.entity) is None:
            return [f"entity not found: {item.entity}"]
        return []

    def raw_key(self, raw: object) -> Hashable | None:
        if not isinstance(raw, Mapping):
            return None
        return (raw.get("entity"), raw.get("hook", "after_write"), raw.get("url"))

    def key_of(self, item: Webhook) -> Hashable:
        return (item.entity, item.hook, item.url)

    def raw_label(self, raw: object) -> str:
        return raw_text(raw, "entity", "hook", "url")


WEBHOOKS: Final = WebhookKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (WEBHOOKS,)


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
            value = iso_utc(value)
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


def _log_id(raw_id: str) -> uuid.UUID:
    row_id = row_uuid(raw_id)
    if row_id is None:
        raise not_found("Webhook log", raw_id)
    return row_id


async def get_log(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    row_id = _log_id(raw_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _webhook_logs where id = %s", (row_id,))
        row = await cur.fetchone()
    if row is None:
        raise not_found("Webhook log", raw_id)
    return _log_json(row)


async def retry_log(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    """Due now again (attempt not reset); the dispatcher is woken at once."""
    row_id = _log_id(raw_id)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select status from _webhook_logs where id = %s for update", (row_id,))
        row = await cur.fetchone()
        if row is None:
            raise not_found("Webhook log", raw_id)
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
        "next_retry_at": iso_utc(updated["next_retry_at"]),
        "updated_at": iso_utc(updated["updated_at"]),
    }
