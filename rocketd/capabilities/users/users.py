"""App users (`_users`): the admin operations, the password policy, and the per-request check
that the user behind a token still exists and is active.

Admin operations (spec auth-permissions.md "Users admin"):

- the password hash is never selected into a response and never logged; passwords are checked
  against the policy (`auth.password_min_length`, and bcrypt's 72-byte limit) with a 422 naming
  the rule;
- PUT keeps the stored value of every key it does not send (upstream-gaps C28: upstream writes
  NULL into `active` and `[]` into `roles`); `password` changes only when a non-empty one is sent;
- DELETE is a hard delete (refresh tokens go with it by FK cascade);
- deactivating a user or changing their password also revokes their refresh tokens;
- every change announces `UserChanged(<id>)` on the app database's notice channel in its own
  transaction, so every instance drops that user from its `UserStates` cache
  (`rocketd/auth/user_states.py`) at commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.auth import passwords
from rocketd.capabilities.permissions import Problems, parse_roles, reject_unknown
from rocketd.db import notify
from rocketd.db.notify import UserChanged
from rocketd.errors import Conflict, NotFound

MAX_EMAIL_LENGTH: Final = 254
USER_KEYS: Final = ("email", "password", "roles", "active")
READ_ONLY_KEYS: Final = frozenset({"id", "created_at", "updated_at"})
EMAIL_TAKEN: Final = "A user with this email already exists"


def _uuid(raw: str) -> uuid.UUID | None:
    if len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def announce_user_change(conn: AsyncConnection[Any], user_id: Any) -> None:
    """Tell every instance (at commit) to forget the cached state of `user_id`."""
    await notify.send(conn, UserChanged(str(user_id)))


# --- validation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int
    bcrypt_cost: int


def check_password(password: str, policy: PasswordPolicy, problems: Problems) -> None:
    """The password policy; problems never quote the password."""
    if len(password) < policy.min_length:
        problems.add(
            "password",
            f"password must be at least {policy.min_length} characters",
            "min_length",
        )
    elif len(password.encode()) > passwords.MAX_PASSWORD_BYTES:
        problems.add(
            "password",
            f"password must be at most {passwords.MAX_PASSWORD_BYTES} bytes",
            "max_length",
        )
    elif "\x00" in password:
        problems.add("password", "password must not contain NUL characters", "type")


def check_email(email: str, problems: Problems, where: str = "email") -> None:
    if len(email) > MAX_EMAIL_LENGTH:
        problems.add(where, f"{where} must be at most {MAX_EMAIL_LENGTH} characters", "max_length")
    elif not email.isprintable() or email != email.strip():
        problems.add(
            where,
            f"{where} must not contain control characters or surrounding spaces",
            "format",
        )


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _text(body: Mapping[str, Any], key: str, problems: Problems, *, required: bool) -> str | None:
    """The string under `key`: None when absent; "" (with a 422) when required and empty."""
    if key not in body:
        if required:
            problems.add(key, f"{key} is required", "required")
        return None
    value = body[key]
    if value is None or value == "":
        if required or key == "email":
            problems.add(key, f"{key} is required", "required")
        return ""
    if not isinstance(value, str):
        problems.wrong_type(key, "a string")
        return ""
    return value


@dataclass(frozen=True)
class UserInput:
    """A validated body; None means "not sent" (PUT keeps the stored value)."""

    email: str | None
    password: str | None
    roles: tuple[str, ...] | None
    active: bool | None


def parse_user_body(
    body: Mapping[str, Any], policy: PasswordPolicy, *, creating: bool
) -> UserInput:
    reject_unknown(body, USER_KEYS, READ_ONLY_KEYS)
    problems = Problems()
    email = _text(body, "email", problems, required=creating)
    if email:
        check_email(email, problems)
    password = _text(body, "password", problems, required=creating)
    if password:
        check_password(password, policy, problems)
    roles: tuple[str, ...] | None = None
    if "roles" in body:
        roles = () if body["roles"] is None else parse_roles(body["roles"], "roles", problems)
    active = body.get("active")
    if active is not None and not isinstance(active, bool):
        problems.wrong_type("active", "true or false")
    problems.raise_if_any()
    return UserInput(
        email or None,
        password or None,
        roles,
        active if isinstance(active, bool) else None,
    )


# --- admin operations ----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def user_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "roles": list(row["roles"] or []),
        "active": row["active"] is not False,
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _not_found(raw_id: str) -> NotFound:
    return NotFound(f"User not found: {_short(raw_id)}")


async def list_users(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select id, email, roles, active, created_at, updated_at from _users order by email, id"
        )
        return [user_json(r) for r in await cur.fetchall()]


async def get_user(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    key = _uuid(raw_id)
    if key is None:
        raise _not_found(raw_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select id, email, roles, active, created_at, updated_at from _users where id = %s",
            (key,),
        )
        row = await cur.fetchone()
    if row is None:
        raise _not_found(raw_id)
    return user_json(row)


async def create_user(
    pool: AsyncConnectionPool[Any], body: Mapping[str, Any], policy: PasswordPolicy
) -> dict[str, Any]:
    data = parse_user_body(body, policy, creating=True)
    assert data.email is not None and data.password is not None  # required on create
    pw_hash = await passwords.hash_password(data.password, policy.bcrypt_cost)
    try:
        async with pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "insert into _users (email, password_hash, roles, active) values (%s, %s, %s, %s)"
                " returning id, email, roles, active, created_at, updated_at",
                (
                    data.email,
                    pw_hash,
                    list(data.roles or ()),
                    True if data.active is None else data.active,
                ),
            )
            row = await cur.fetchone()
    except pg_errors.UniqueViolation as exc:
        raise Conflict(EMAIL_TAKEN) from exc
    assert row is not None
    return user_json(row)


async def update_user(
    pool: AsyncConnectionPool[Any], raw_id: str, body: Mapping[str, Any], policy: PasswordPolicy
) -> dict[str, Any]:
    """PUT: sent keys replace, absent keys keep the stored values (C28)."""
    key = _uuid(raw_id)
    data = parse_user_body(body, policy, creating=False)
    if key is None:
        raise _not_found(raw_id)
    pw_hash = None
    if data.password is not None:
        pw_hash = await passwords.hash_password(data.password, policy.bcrypt_cost)
    try:
        async with pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "select email, roles, active from _users where id = %s for update", (key,)
            )
            stored = await cur.fetchone()
            if stored is None:
                raise _not_found(raw_id)
            active = stored["active"] is not False if data.active is None else data.active
            await cur.execute(
                "update _users set email = %s, roles = %s, active = %s,"
                " password_hash = coalesce(%s, password_hash), updated_at = now()"
                " where id = %s returning id, email, roles, active, created_at, updated_at",
                (
                    stored["email"] if data.email is None else data.email,
                    list(stored["roles"] or []) if data.roles is None else list(data.roles),
                    active,
                    pw_hash,
                    key,
                ),
            )
            row = await cur.fetchone()
            if pw_hash is not None or not active:
                # A new password or a disabled account ends every session of the user.
                await conn.execute("delete from _refresh_tokens where user_id = %s", (key,))
            await announce_user_change(conn, key)
    except pg_errors.UniqueViolation as exc:
        raise Conflict(EMAIL_TAKEN) from exc
    assert row is not None
    return user_json(row)


async def delete_user(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    key = _uuid(raw_id)
    if key is None:
        raise _not_found(raw_id)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("delete from _users where id = %s returning id", (key,))
        if await cur.fetchone() is None:
            raise _not_found(raw_id)
        await announce_user_change(conn, key)
    return {"id": str(key), "deleted": True}
