"""Shared pieces of the users, invites and permissions tests: a small help-desk schema, users
made through the admin API, and policies."""

from __future__ import annotations

from typing import Any

import jwt

from tests.support.apps import AppClient

PASSWORD = "pw-long-enough"

TICKET = {
    "name": "ticket",
    "table": "tickets",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string", "required": True},
        {"name": "status", "type": "string", "default": "open"},
        {"name": "owner_id", "type": "uuid"},
        {"name": "department", "type": "string"},
        {"name": "priority", "type": "int", "default": 1},
        {"name": "secret", "type": "string"},
    ],
}
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "ticket_id", "type": "uuid", "required": True},
        {"name": "body", "type": "string", "required": True},
        {"name": "author_id", "type": "uuid"},
    ],
}
LABEL = {
    "name": "label",
    "table": "labels",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "name", "type": "string", "required": True},
        {"name": "team", "type": "string"},
    ],
}
HELPDESK = {
    "entities": [TICKET, NOTE, LABEL],
    "relations": [
        {
            "name": "ticket_notes",
            "type": "one_to_many",
            "source": "ticket",
            "target": "note",
            "source_key": "id",
            "target_key": "ticket_id",
            "on_delete": "cascade",
        },
        {
            "name": "ticket_labels",
            "type": "many_to_many",
            "source": "ticket",
            "target": "label",
            "source_key": "id",
            "join_table": "ticket_label_links",
            "source_join_key": "ticket_id",
            "target_join_key": "label_id",
            "on_delete": "detach",
        },
    ],
}


def subject(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def add_user(
    app: AppClient, email: str, roles: list[str], password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    body = {"email": email, "password": password, "roles": roles, **extra}
    return dict((await app.ok("POST", "_admin/users", body, 201))["data"])


async def login_pair(app: AppClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    resp = await app.client.post(app.url("auth/login"), json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["data"])


async def as_user(app: AppClient, email: str, password: str = PASSWORD) -> AppClient:
    """The same app, called as `email` (logged in through the API)."""
    pair = await login_pair(app, email, password)
    return AppClient(app.client, app.name, pair["access_token"])


async def user_client(app: AppClient, email: str, roles: list[str]) -> AppClient:
    await add_user(app, email, roles)
    return await as_user(app, email)


async def grant(
    app: AppClient,
    entity: str,
    action: str,
    roles: list[str],
    conditions: list[dict[str, Any]] | None = None,
    check: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"entity": entity, "action": action, "roles": roles}
    if conditions is not None:
        body["conditions"] = conditions
    if check is not None:
        body["check"] = check
    return dict((await app.ok("POST", "_admin/permissions", body, 201))["data"])


def cond(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


async def raw(app: AppClient, method: str, path: str, data: bytes, token: str | None = None) -> Any:
    """A request with a raw body (malformed JSON and the like)."""
    headers = {"Content-Type": "application/json"}
    headers["Authorization"] = f"Bearer {token or app.token}"
    return await app.client.request(method, app.url(path), data=data, headers=headers)
