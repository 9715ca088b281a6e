"""App users (`_users`): the admin operations, the password policy, and the per-request check
that the user behind a token still exists and is active.

Admin operations (spec auth-permissions.md "Users admin"):

- the password hash is never selected into a response and never logged; passwords are checked
  against the policy (`auth.password_min_length`, bcrypt's 72-byte limit, not one of the commonest
  passwords, not the user's own email or its local part) with a 422 naming the rule;
- emails are unique whatever their case (rocketd.auth.emails): create and rename check under the
  email's advisory lock and answer 409 for `U1@x.io` when `u1@x.io` exists;
- PUT keeps the stored value of every key it does not send (upstream-gaps C28: upstream writes
  NULL into `active` and `[]` into `roles`); `password` changes only when a non-empty one is sent;
- DELETE is a hard delete (refresh tokens go with it by FK cascade);
- deactivating a user or changing their password also revokes their refresh tokens;
- every change announces `users:<id>` on the app database's metadata channel in its own
  transaction, so every instance drops that user from its `UserStates` cache at commit.

`UserStates` is that cache: (active, roles) per user id, kept `USER_STATE_TTL_SECONDS` at most.
The auth middleware asks it on every authenticated request, so a deleted or deactivated user's
access token stops working at once on the instance that made the change, within the notification
latency on the others, and within the TTL even if a notification were lost. Roles removed from a
user stop counting the same way (the token's roles are intersected with the stored ones); roles
added count from the next token refresh.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.actors.listener import METADATA_CHANNEL
from rocketd.auth import passwords
from rocketd.auth.common_passwords import is_common
from rocketd.auth.emails import lock_email
from rocketd.errors import Conflict, NotFound
from rocketd.metadata.permissions import Problems, parse_roles, reject_unknown

USER_STATE_TTL_SECONDS: Final = 5.0
USERS_NOTIFY_PREFIX: Final = "users:"
MAX_EMAIL_LENGTH: Final = 254
USER_KEYS: Final = ("email", "password", "roles", "active")
READ_ONLY_KEYS: Final = frozenset({"id", "created_at", "updated_at"})
EMAIL_TAKEN: Final = "A user with this email already exists"


# --- the per-request user check ------------------------------------------------------------------


@dataclass(frozen=True)
class UserState:
    active: bool
    roles: frozenset[str]


class UserStates:
    """(active, roles) of the users of one accounts table, cached briefly.

    `get` answers None for a user that does not exist (or an id that cannot be one). Entries
    expire after `ttl` seconds; `invalidate` drops one user (or all) at once, and a load that was
    already running when it did is not stored, so a change is never hidden by a slow read.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        table: str,
        *,
        ttl: float = USER_STATE_TTL_SECONDS,
        max_entries: int = 10_000,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max_entries = max_entries
        self._query = sql.SQL("select active, roles from {} where id = %s").format(
            sql.Identifier(table)
        )
        self._entries: dict[str, tuple[float, UserState | None]] = {}
        self._generation = 0

    async def get(self, user_id: str) -> UserState | None:
        hit = self._entries.get(user_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        key = _uuid(user_id)
        if key is None:
            return None
        generation = self._generation
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._query, (key,))
            row = await cur.fetchone()
        state = None if row is None else UserState(row[0] is not False, frozenset(row[1] or ()))
        if generation == self._generation:
            self._store(user_id, now + self._ttl, state)
        return state

    def _store(self, user_id: str, until: float, state: UserState | None) -> None:
        if len(self._entries) >= self._max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[user_id] = (until, state)

    def invalidate(self, user_id: str | None = None) -> None:
        """Forget one user (None: everyone); loads in flight are not stored."""
        self._generation += 1
        if user_id is None:
            self._entries.clear()
        else:
            self._entries.pop(user_id, None)
            canonical = _uuid(user_id)
            if canonical is not None:
                self._entries.pop(str(canonical), None)


def _uuid(raw: str) -> uuid.UUID | None:
    if len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def announce_user_change(conn: AsyncConnection[Any], user_id: Any) -> None:
    """Tell every instance (at commit) to forget the cached state of `user_id`."""
    await conn.execute(
        "select pg_notify(%s, %s)", (METADATA_CHANNEL, f"{USERS_NOTIFY_PREFIX}{user_id}")
    )


# --- validation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int
    bcrypt_cost: int


def check_password(
    password: str, policy: PasswordPolicy, problems: Problems, email: str | None = None
) -> None:
    """The password policy for a password being set (for the account of `email`, when known);
    problems never quote the password."""
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
    elif is_common(password):
        problems.add(
            "password",
            "password is one of the most common passwords; choose one that is harder to guess",
            "common",
        )
    elif email and password.lower() in _email_forms(email):
        problems.add("password", "password must not be the account's email address", "email")


def _email_forms(email: str) -> set[str]:
    """The email and its local part, lower-cased: passwords an attacker tries first."""
    lowered = email.lower()
    return {lowered, lowered.rpartition("@")[0] or lowered}


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
    body: Mapping[str, Any],
    policy: PasswordPolicy,
    *,
    creating: bool,
    stored_email: str | None = None,
) -> UserInput:
    """A checked body; a password is checked against the body's email, else `stored_email`."""
    reject_unknown(body, USER_KEYS, READ_ONLY_KEYS)
    problems = Problems()
    email = _text(body, "email", problems, required=creating)
    if email:
        check_email(email, problems)
    password = _text(body, "password", problems, required=creating)
    if password:
        check_password(password, policy, problems, email or stored_email)
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


async def email_taken(
    conn: AsyncConnection[Any], email: str, except_id: uuid.UUID | None = None
) -> bool:
    """Whether another user has `email` in any case (call under `lock_email`)."""
    cur = await conn.execute(
        "select 1 from _users where lower(email) = lower(%s) and id is distinct from %s limit 1",
        (email, except_id),
    )
    return await cur.fetchone() is not None


async def create_user(
    pool: AsyncConnectionPool[Any], body: Mapping[str, Any], policy: PasswordPolicy
) -> dict[str, Any]:
    data = parse_user_body(body, policy, creating=True)
    assert data.email is not None and data.password is not None  # required on create
    pw_hash = await passwords.hash_password(data.password, policy.bcrypt_cost)
    try:
        async with pool.connection() as conn, conn.transaction():
            await lock_email(conn, data.email)
            if await email_taken(conn, data.email):
                raise Conflict(EMAIL_TAKEN)
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
    stored_email = None
    if key is not None and isinstance(body.get("password"), str) and not body.get("email"):
        # A new password alone is checked against the email the user already has.
        async with pool.connection() as conn:
            cur = await conn.execute("select email from _users where id = %s", (key,))
            row = await cur.fetchone()
        stored_email = row[0] if row else None
    data = parse_user_body(body, policy, creating=False, stored_email=stored_email)
    if key is None:
        raise _not_found(raw_id)
    pw_hash = None
    if data.password is not None:
        pw_hash = await passwords.hash_password(data.password, policy.bcrypt_cost)
    try:
        async with pool.connection() as conn, conn.transaction():
            if data.email is not None:
                await lock_email(conn, data.email)
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "select email, roles, active from _users where id = %s for update", (key,)
            )
            stored = await cur.fetchone()
            if stored is None:
                raise _not_found(raw_id)
            if data.email is not None and await email_taken(conn, data.email, key):
                raise Conflict(EMAIL_TAKEN)
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
