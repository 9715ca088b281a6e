"""A webhook registration (`_webhooks`): parsing with the spec's defaults and 422 messages.

Validation happens at save time and never resolves the URL's host (S16 is enforced at delivery
time, on the resolved address). Conditions compile here; `{{env.NAME}}` templates are accepted
only for names with the configured prefix (S14). The hook/async combinations that upstream
silently never fires (C9) are refused; an omitted `async` follows the hook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rocketd.errors import ErrorDetail, InvalidPayload, ValidationFailed
from rocketd.expressions import compile_expression
from rocketd.expressions.errors import ExpressionError
from rocketd.expressions.expression import Expression

HOOKS: Final = ("after_write", "before_write", "after_delete", "before_delete")
METHODS: Final = ("POST", "PUT", "PATCH", "GET", "DELETE")
BACKOFFS: Final = ("exponential", "linear")
MAX_ATTEMPTS_LIMIT: Final = 20
CONDITION_NAMES: Final = frozenset(
    {"record", "old", "changes", "action", "entity", "event", "user"}
)
ENV_TEMPLATE: Final = re.compile(r"\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _fail(message: str, name: str = "") -> ValidationFailed:
    return ValidationFailed(message, [ErrorDetail(message, field=name)])


@dataclass(frozen=True)
class Retry:
    max_attempts: int = 3
    backoff: str = "exponential"

    def to_json(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "backoff": self.backoff}


@dataclass(frozen=True)
class Webhook:
    entity: str
    hook: str
    url: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    condition: str = ""
    is_async: bool = True
    retry: Retry = Retry()
    active: bool = True
    id: str = ""
    compiled: Expression | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entity": self.entity,
            "hook": self.hook,
            "url": self.url,
            "method": self.method,
            "headers": dict(self.headers),
            "condition": self.condition,
            "async": self.is_async,
            "retry": self.retry.to_json(),
            "active": self.active,
        }


def env_names(value: str) -> list[str]:
    return ENV_TEMPLATE.findall(value)


def parse_webhook(body: object, env_prefix: str) -> Webhook:
    """A webhook from a POST/PUT body (omitted keys take the POST defaults); 400/422 on errors."""
    if not isinstance(body, Mapping):
        raise InvalidPayload("Request body must be a JSON object")
    entity = body.get("entity")
    if not isinstance(entity, str) or not entity.strip():
        raise _fail("entity is required", "entity")
    hook = body.get("hook", "after_write")
    if hook not in HOOKS:
        raise _fail(
            "hook must be after_write, before_write, after_delete, or before_delete", "hook"
        )
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise _fail("url is required", "url")
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise _fail("url must start with http:// or https://", "url")
    method = body.get("method", "POST")
    if method not in METHODS:
        raise _fail("method must be POST, PUT, PATCH, GET, or DELETE", "method")
    is_async = body.get("async", hook.startswith("after_"))
    if not isinstance(is_async, bool):
        raise _fail("async must be a boolean", "async")
    if hook.startswith("after_") and not is_async:
        raise _fail(f"{hook} webhooks must be async (a sync {hook} webhook never fires)", "async")
    if hook.startswith("before_") and is_async:
        raise _fail(f"{hook} webhooks must not be async (an async {hook} never fires)", "async")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise _fail("active must be a boolean", "active")
    return Webhook(
        entity=entity,
        hook=hook,
        url=url,
        method=method,
        headers=_headers(body.get("headers"), env_prefix),
        condition=(cond := _condition(body.get("condition"))),
        is_async=is_async,
        retry=_retry(body.get("retry")),
        active=active,
        id=str(body.get("id") or ""),
        compiled=compile_expression(cond) if cond.strip() else None,
    )


def _headers(value: object, env_prefix: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail("headers must be an object of string values", "headers")
    for name, text in value.items():
        if not name.strip() or any(c in name for c in ":\r\n ") or any(c in text for c in "\r\n"):
            raise _fail(f"invalid header: {name!r}", "headers")
        for var in env_names(text):
            if not var.startswith(env_prefix):
                raise _fail(
                    f"header {name} uses {{{{env.{var}}}}}: only environment variables whose "
                    f"name starts with {env_prefix} may be sent",
                    "headers",
                )
    return dict(value)


def _condition(value: object) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _fail("condition must be a string", "condition")
    if not value.strip():
        return ""
    try:
        expression = compile_expression(value)
    except ExpressionError as exc:
        raise _fail(f"condition: {exc.message}", "condition") from None
    unknown = sorted(expression.names - CONDITION_NAMES)
    if unknown:
        raise _fail(
            f"condition uses unknown variable {unknown[0]}; available: "
            + ", ".join(sorted(CONDITION_NAMES)),
            "condition",
        )
    return value


def _retry(value: object) -> Retry:
    if value is None or value == {}:
        return Retry()
    if not isinstance(value, Mapping):
        raise _fail("retry must be an object", "retry")
    attempts = value.get("max_attempts", Retry.max_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise _fail("retry.max_attempts must be an integer", "retry")
    if not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
        raise _fail(f"retry.max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}", "retry")
    backoff = value.get("backoff", Retry.backoff)
    if backoff not in BACKOFFS:
        raise _fail("retry.backoff must be exponential or linear", "retry")
    return Retry(attempts, backoff)


@dataclass(frozen=True)
class WebhookBook:
    """Active webhooks of an app by (entity, hook), in registry order; part of the snapshot."""

    by_hook: Mapping[tuple[str, str], tuple[Webhook, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def matching(self, entity: str, hook: str) -> tuple[Webhook, ...]:
        return self.by_hook.get((entity, hook), ())

    @classmethod
    def build(cls, rows: Sequence[Mapping[str, Any]]) -> WebhookBook:
        by_hook: dict[tuple[str, str], list[Webhook]] = {}
        problems: list[str] = []
        for row in rows:
            if not row["active"]:
                continue
            try:
                # Loaded rows are not re-checked against the env prefix: delivery enforces it.
                hook = parse_webhook({**row, "async": row["async"]}, env_prefix="")
            except (ValidationFailed, InvalidPayload) as exc:
                problems.append(f"webhook {row['id']}: {exc.message}")
                continue
            by_hook.setdefault((hook.entity, hook.hook), []).append(hook)
        return cls({k: tuple(v) for k, v in by_hook.items()}, tuple(problems))


EMPTY_WEBHOOKS: Final = WebhookBook()
