"""The webhook outbox: `_webhook_logs` rows written inside the write transaction.

A delivery row *is* the spec's log row. It is inserted with `status = 'pending'` and
`next_retry_at = now()` in the same transaction as the write, so it exists exactly when the write
commits; the same INSERT signals `webhooks` (`RETURNING pg_notify`), which wakes the dispatcher
of every instance on commit.
Sync (`before_*`) webhooks are called here too, inside the transaction, with a short timeout.

`request_headers` keeps the header *templates* (`{{env.NAME}}` unresolved), never resolved
secrets (S15); they are resolved again on every attempt.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from rocketd.auth.principal import Principal
from rocketd.capabilities.webhooks.model import WebhookBook
from rocketd.capabilities.webhooks.outbound import DeliveryPolicy, Sender
from rocketd.config import WebhookSettings
from rocketd.engine.changes import Changes
from rocketd.engine.pipeline import ServiceKey
from rocketd.engine.record_state import json_value, user_variable
from rocketd.engine.signals import RETURNING_SIGNAL, signal_params
from rocketd.engine.write.transaction import execute_at_commit
from rocketd.errors import ErrorDetail, InternalError, ValidationFailed
from rocketd.expressions import EvaluationError
from rocketd.logging import get_logger
from rocketd.timestamps import now_text
from rocketd.tracing import current_ids, start_span

log = get_logger("rocketd.webhooks")

SIGNAL: Final = "webhooks"
INSERT_LOG: Final = (
    "insert into _webhook_logs (webhook_id, source, entity, hook, url, method, request_headers,"
    " request_body, status, attempt, max_attempts, backoff, next_retry_at, idempotency_key,"
    " trace_id, parent_span_id)"
    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class Outbound:
    """The process-wide outbound policy and the sender sync hooks use: one per process,
    provided by the webhooks capability at start (`OUTBOUND`), closed at shutdown."""

    def __init__(self, settings: WebhookSettings, allow_networks: Iterable[str] = ()) -> None:
        self.policy = DeliveryPolicy(settings, allow_networks)
        self.sync_sender = Sender(self.policy)

    async def close(self) -> None:
        await self.sync_sender.close()


OUTBOUND: Final[ServiceKey[Outbound]] = ServiceKey("webhooks.outbound")


def new_idempotency_key() -> str:
    return f"wh_{uuid.uuid4()}"


def build_payload(
    event: str,
    entity: str,
    action: str,
    changes: Changes,
    principal: Principal | None,
    idempotency_key: str,
) -> dict[str, Any]:
    """The spec's payload. `old` is omitted on create (the Go form); `changes` accompanies it,
    and a create lists every field with `old: null` (as the spec says)."""
    payload: dict[str, Any] = {
        "event": event,
        "entity": entity,
        "action": action,
        "record": dict(changes.record),
    }
    if action == "update" and changes.old is not None:
        payload["old"] = dict(changes.old)
        payload["changes"] = changes.to_json()
    elif action == "create":
        payload["changes"] = changes.to_json()
    if principal is not None and principal.user_id:
        payload["user"] = json_value(user_variable(principal))
    payload["timestamp"] = now_text()
    payload["idempotency_key"] = idempotency_key
    return payload


def _condition_env(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "record": payload.get("record", {}),
        "old": payload.get("old", {}),
        "changes": payload.get("changes", {}),
        "action": payload["action"],
        "entity": payload["entity"],
        "event": payload["event"],
        "user": payload.get("user", {}),
    }


async def enqueue_async(
    conn: AsyncConnection[Any],
    book: WebhookBook,
    event: str,
    entity: str,
    action: str,
    changes: Changes,
    principal: Principal | None,
) -> int:
    """Outbox rows for every matching async webhook (`after_write`/`after_delete`)."""
    hooks = book.matching(entity, event)
    if not hooks:
        return 0
    key = new_idempotency_key()  # one per event, shared by its webhooks, kept on retries
    payload = build_payload(event, entity, action, changes, principal, key)
    env = _condition_env(payload)
    written = 0
    for hook in hooks:
        if not hook.is_async:
            continue
        if hook.compiled is not None:
            try:
                if not hook.compiled.test(env):
                    continue
            except EvaluationError as exc:
                log.warning("webhook condition failed; skipped", webhook=hook.id, error=str(exc))
                continue
        await execute_at_commit(
            conn,
            INSERT_LOG,
            (
                hook.id,
                "webhook",
                entity,
                event,
                hook.url,
                hook.method,
                Jsonb(dict(hook.headers)),
                Jsonb(payload),
                "pending",
                0,
                hook.retry.max_attempts,
                hook.retry.backoff,
                datetime.now(UTC),
                key,
                *current_ids(),
            ),
            signal=SIGNAL,
        )
        written += 1
    return written


async def enqueue_direct(
    conn: AsyncConnection[Any],
    source: str,
    entity: str,
    url: str,
    method: str,
    body: Mapping[str, Any],
    *,
    max_attempts: int = 3,
) -> None:
    """A state-machine or workflow `webhook` action: the same logged, retried outbox (C12)."""
    key = new_idempotency_key()
    await conn.execute(
        INSERT_LOG + RETURNING_SIGNAL,
        (
            None,
            source,
            entity,
            source,
            url,
            method,
            Jsonb({}),
            Jsonb({**json_value(dict(body)), "idempotency_key": key}),
            "pending",
            0,
            max_attempts,
            "exponential",
            datetime.now(UTC),
            key,
            *current_ids(),
            *signal_params(SIGNAL),
        ),
    )


def _sees_detail(principal: Principal | None) -> bool:
    """Only app admins are told which webhook failed and how; the id, the target's address
    class and the receiver's status mean nothing to other writers and help an attacker."""
    return principal is not None and principal.is_admin


def _refusal(
    action: str, hook_id: str, status: int, error: str, principal: Principal | None
) -> ValidationFailed:
    if _sees_detail(principal):
        return ValidationFailed(
            f"Webhook rejected the {action}: {error}",
            [ErrorDetail(f"webhook {hook_id} status {status}", rule="webhook")],
        )
    return ValidationFailed(
        f"Webhook rejected the {action}",
        [ErrorDetail(f"a webhook refused this {action}", rule="webhook")],
    )


async def call_sync(
    conn: AsyncConnection[Any],
    outbound: Outbound,
    book: WebhookBook,
    event: str,
    entity: str,
    action: str,
    changes: Changes,
    principal: Principal | None,
) -> None:
    """Sync `before_*` webhooks inside the transaction; a failure rolls the write back (422,
    with the webhook's id and answer for app admins only; the log has them either way)."""
    hooks = [h for h in book.matching(entity, event) if not h.is_async]
    if not hooks:
        return
    key = new_idempotency_key()
    payload = build_payload(event, entity, action, changes, principal, key)
    env = _condition_env(payload)
    body = json.dumps(payload, separators=(",", ":")).encode()
    for hook in hooks:
        if hook.compiled is not None:
            try:
                if not hook.compiled.test(env):
                    continue
            except EvaluationError as exc:
                log.warning("sync webhook condition failed", webhook=hook.id, error=exc.message)
                detail = f"webhook {hook.id} condition failed: {exc.message}"
                raise InternalError(detail if _sees_detail(principal) else None) from exc
        async with start_span(
            "webhook",
            "dispatcher",
            "webhook.dispatch",
            entity=entity,
            metadata={
                "url": hook.url,
                "method": hook.method,
                "hook": event,
                "async": False,
                "webhook_id": hook.id,
            },
        ) as span:
            outcome = await outbound.sync_sender.send(
                hook.method,
                hook.url,
                hook.headers,
                body,
                key,
                timeout=outbound.policy.settings.sync_timeout,
            )
            span.set_metadata(status_code=outcome.status)
            if not outcome.ok:
                span.set_status("error", outcome.error or f"status {outcome.status}")
        if not outcome.ok:
            log.warning(
                "sync webhook refused the write",
                webhook=hook.id,
                url=hook.url,
                status=outcome.status,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
            raise _refusal(action, hook.id, outcome.status, outcome.error, principal)
        await conn.execute(
            "insert into _webhook_logs (webhook_id, source, entity, hook, url, method,"
            " request_headers, request_body, response_status, response_body, status, attempt,"
            " max_attempts, idempotency_key) values"
            " (%s, 'webhook', %s, %s, %s, %s, %s, %s, %s, %s, 'delivered', 1, 1, %s)",
            (
                hook.id,
                entity,
                event,
                hook.url,
                hook.method,
                Jsonb(dict(hook.headers)),
                Jsonb(payload),
                outcome.status,
                outcome.body,
                key,
            ),
        )
