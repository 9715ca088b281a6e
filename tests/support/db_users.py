"""App users and permission rows written straight into an app's database (no admin API call),
and a client logged in as such a user."""

from __future__ import annotations

import uuid
from typing import Any

import bcrypt
import psycopg

from tests.support.apps import AppClient
from tests.support.databases import dsn_for


def add_user(
    pg_dsn: str, app: str, email: str, password: str, roles: list[str], active: bool = True
) -> str:
    pw_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app}")) as conn:
        row = conn.execute(
            "insert into _users (email, password_hash, roles, active) values (%s, %s, %s, %s)"
            " returning id",
            (email, pw_hash, roles, active),
        ).fetchone()
    assert row is not None
    return str(row[0])


async def app_login(client: Any, app: str, email: str, password: str) -> Any:
    return await client.post(f"/api/{app}/auth/login", json={"email": email, "password": password})


def grant_writes(pg_dsn: str, app: AppClient, entity: str, role: str) -> None:
    """Permission rows so a non-admin may write (loaded with the next snapshot reload)."""
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        for action in ("read", "create", "update", "delete"):
            conn.execute(
                "insert into _permissions (entity, action, roles) values (%s, %s, %s)",
                (entity, action, [role]),
            )


async def user_client(client: Any, pg_dsn: str, app: AppClient, role: str) -> tuple[AppClient, str]:
    """A client of the app logged in as a new user with one role, and the user's id."""
    email = f"{role}-{uuid.uuid4().hex[:6]}@x.io"
    user_id = add_user(pg_dsn, app.name, email, "pw-long-enough", [role])
    resp = await app_login(client, app.name, email, "pw-long-enough")
    return AppClient(client, app.name, (await resp.json())["data"]["access_token"]), user_id
