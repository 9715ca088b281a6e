"""The platform users' own account: who am I, change my password, change my email; and the checks
the CLI (`rocketd platform set-password|set-email`) and the start-up refusal need.

Used by `/api/_platform/auth/me|password|email` (rocketd.http.routes.platform) with the caller's
current password checked first, and by the CLI without it (whoever runs it can reach the
database anyway). A password change revokes the account's refresh tokens, except the family of
the one the caller names (its own session); the email keeps its case-insensitive uniqueness
(rocketd.auth.emails).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rocketd.auth import passwords, tokens
from rocketd.auth.accounts import (
    KNOWN_DEFAULT_PASSWORD,
    PLATFORM_TABLES,
    AccountService,
    TokenPolicy,
)
from rocketd.auth.emails import lock_email
from rocketd.auth.password_policy import email_problem, password_problem
from rocketd.errors import Conflict, ErrorDetail, NotFound, Unauthorized, ValidationFailed

EMAIL_TAKEN = "A platform user with this email already exists"


@dataclass(frozen=True)
class PlatformUser:
    id: str
    email: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "email": self.email}


def _user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Unauthorized("Invalid or expired token") from None


async def get_user(pool: AsyncConnectionPool[Any], user_id: str) -> PlatformUser:
    """The active platform user behind a token (401 when gone or disabled, like a bad token)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select id, email from _platform_users where id = %s and active is not false",
            (_user_id(user_id),),
        )
        row = await cur.fetchone()
    if row is None:
        raise Unauthorized("Invalid or expired token")
    return PlatformUser(str(row[0]), str(row[1]))


async def find_user(pool: AsyncConnectionPool[Any], email: str) -> PlatformUser:
    """The platform user with this email, in any case (exact spelling first)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select id, email from _platform_users where lower(email) = lower(%s)"
            " order by email = %s desc, created_at, id limit 1",
            (email, email),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"No platform user with email {email}")
    return PlatformUser(str(row[0]), str(row[1]))


async def check_current_password(
    pool: AsyncConnectionPool[Any], user: PlatformUser, password: object, cost: int
) -> None:
    """422 on `current_password` unless it is the account's password."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select password_hash from _platform_users where id = %s", (uuid.UUID(user.id),)
        )
        row = await cur.fetchone()
    given = password if isinstance(password, str) else ""
    if not given or not await passwords.verify_password(given, row[0] if row else None, cost):
        detail = ErrorDetail("current_password is not this account's password", "current_password")
        raise ValidationFailed("current_password is not this account's password", [detail])


def check_new_password(password: str, min_length: int, email: str, field: str) -> None:
    """422 naming `field` when the password breaks the policy (rocketd.auth.password_policy)."""
    problem = password_problem(password, min_length, email)
    if problem is not None:
        message, rule = problem
        raise ValidationFailed(message, [ErrorDetail(message, field, rule)])


async def set_password(
    pool: AsyncConnectionPool[Any],
    user: PlatformUser,
    password: str,
    cost: int,
    keep_refresh_token: str | None = None,
) -> int:
    """Store the new password; revoke the account's refresh tokens but the family of
    `keep_refresh_token` (when it is one of this account's). Returns how many were revoked."""
    new_hash = await passwords.hash_password(password, cost)
    user_id = uuid.UUID(user.id)
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "update _platform_users set password_hash = %s, updated_at = now() where id = %s",
            (new_hash, user_id),
        )
        keep = None
        if keep_refresh_token:
            cur = await conn.execute(
                "select family_id from _platform_refresh_tokens"
                " where token_hash = %s and user_id = %s",
                (tokens.refresh_token_digest(keep_refresh_token), user_id),
            )
            row = await cur.fetchone()
            keep = row[0] if row else None
        cur = await conn.execute(
            "delete from _platform_refresh_tokens where user_id = %s"
            " and family_id is distinct from %s",
            (user_id, keep),
        )
        return int(cur.rowcount)


async def set_email(pool: AsyncConnectionPool[Any], user: PlatformUser, email: str) -> PlatformUser:
    """Rename the account (409 when another platform user has this email in any case)."""
    problem = email_problem(email) if email else ("email is required", "required")
    if problem is not None:
        message, rule = problem
        raise ValidationFailed(message, [ErrorDetail(message, "email", rule)])
    async with pool.connection() as conn, conn.transaction():
        await lock_email(conn, email)
        cur = await conn.execute(
            "select 1 from _platform_users where lower(email) = lower(%s) and id <> %s",
            (email, uuid.UUID(user.id)),
        )
        if await cur.fetchone() is not None:
            raise Conflict(EMAIL_TAKEN)
        await conn.execute(
            "update _platform_users set email = %s, updated_at = now() where id = %s",
            (email, uuid.UUID(user.id)),
        )
    return PlatformUser(user.id, email)


async def seed_admin(pool: AsyncConnectionPool[Any], email: str, password: str, cost: int) -> bool:
    """Create the platform admin with `password` when there is no platform user yet (before the
    first start, so that `changeme` is never stored); True when it did."""
    policy = TokenPolicy(access_ttl=1, refresh_ttl=1, bcrypt_cost=cost)  # no tokens are issued
    seeder = AccountService(pool, PLATFORM_TABLES, "", policy)
    return await seeder.seed_admin(email, password, ["platform_admin"])


async def admins_with_default_password(pool: AsyncConnectionPool[Any], cost: int) -> list[str]:
    """Emails of the active platform admins whose password is still the seeded `changeme`."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select email, password_hash from _platform_users"
            " where active is not false and 'platform_admin' = any(roles) order by email"
        )
        rows = await cur.fetchall()
    return [
        str(email)
        for email, stored in rows
        if await passwords.verify_password(KNOWN_DEFAULT_PASSWORD, stored, cost)
    ]
