"""Login, refresh and logout against one pair of account tables.

The same logic serves platform users (`_platform_users` / `_platform_refresh_tokens`, signed with
the platform secret) and each app's users (`_users` / `_refresh_tokens`, signed with the app's
secret); only the tables and the secret differ, so both are parameters, never two copies.

Emails compare case-insensitively (rocketd.auth.emails); when a table from before that rule holds
accounts whose emails differ only in case, a login takes the exact spelling first, then the oldest.
Failed logins are throttled by the caller (rocketd.auth.throttle), which needs the credentials
checked first: `login_credentials` is that check, and it keeps values PostgreSQL cannot store (a
NUL character) out of SQL with a 400.

Refresh tokens rotate in families: every refresh marks the presented row as rotated and issues a
new one in the same family. Presenting a rotated token again means it was stolen or replayed, so
the whole family is revoked. Logout revokes the family of the presented token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from rocketd.auth import passwords, tokens
from rocketd.errors import ErrorDetail, InvalidPayload, Unauthorized
from rocketd.logging import get_logger

log = get_logger("rocketd.auth")

# The seeded default password of the contract; logging in with it is flagged (upstream-gaps S10).
KNOWN_DEFAULT_PASSWORD = "changeme"  # noqa: S105 - a known public default, not a secret


@dataclass(frozen=True)
class AccountTables:
    users: str
    refresh_tokens: str


PLATFORM_TABLES = AccountTables("_platform_users", "_platform_refresh_tokens")
APP_TABLES = AccountTables("_users", "_refresh_tokens")


@dataclass(frozen=True)
class TokenPolicy:
    access_ttl: int
    refresh_ttl: int
    bcrypt_cost: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    default_password: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
        }
        if self.default_password:
            # Additive flag: clients that do not know it ignore it.
            out["default_password"] = True
        return out


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# The contract's message for a login body it cannot use.
INVALID_REQUEST_BODY = "Invalid request body"


def login_credentials(email: object, password: object) -> tuple[str, str]:
    """(email, password) of a login body: 401 when either is missing or empty (the contract's
    answer), 400 `INVALID_PAYLOAD` when either holds a NUL character (PostgreSQL text cannot)."""
    email_s, password_s = _text(email), _text(password)
    if not email_s or not password_s:
        raise Unauthorized("Email and password are required")
    bad = [
        name for name, value in (("email", email_s), ("password", password_s)) if "\x00" in value
    ]
    if bad:
        raise InvalidPayload(
            INVALID_REQUEST_BODY,
            [
                ErrorDetail(f"{name} must not contain NUL characters", name, "format")
                for name in bad
            ],
        )
    return email_s, password_s


class AccountService:
    """Authentication for the accounts stored in `tables` of the database behind `pool`."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        tables: AccountTables,
        secret: str,
        policy: TokenPolicy,
        seeded_password: str = KNOWN_DEFAULT_PASSWORD,
    ) -> None:
        self._pool = pool
        # Logging in with one of these is flagged: the seeded account was never secured.
        self._default_passwords = frozenset({KNOWN_DEFAULT_PASSWORD, seeded_password})
        self._secret = secret
        self._policy = policy
        users = sql.Identifier(tables.users)
        refresh = sql.Identifier(tables.refresh_tokens)
        self._q_user_by_email = sql.SQL(
            "select id, password_hash, roles, active from {} where lower(email) = lower(%s)"
            " order by email = %s desc, created_at, id limit 1"
        ).format(users)
        self._q_rehash = sql.SQL(
            "update {} set password_hash = %s, updated_at = now() where id = %s"
        ).format(users)
        self._q_insert_refresh = sql.SQL(
            "insert into {} (user_id, token_hash, family_id, expires_at) values (%s, %s, %s, %s)"
        ).format(refresh)
        self._q_refresh_for_update = sql.SQL(
            "select r.id, r.user_id, r.family_id, r.expires_at, r.rotated_at, u.roles, u.active"
            " from {} r join {} u on u.id = r.user_id where r.token_hash = %s for update of r"
        ).format(refresh, users)
        self._q_rotate = sql.SQL("update {} set rotated_at = now() where id = %s").format(refresh)
        self._q_delete_family = sql.SQL("delete from {} where family_id = %s").format(refresh)
        self._q_delete_row = sql.SQL("delete from {} where id = %s").format(refresh)
        self._q_family_of = sql.SQL("select family_id from {} where token_hash = %s").format(
            refresh
        )
        self._q_purge = sql.SQL("delete from {} where expires_at < now()").format(refresh)
        self._q_count_users = sql.SQL("select count(*) from {}").format(users)
        self._q_seed = sql.SQL(
            "insert into {} (email, password_hash, roles, active) values (%s, %s, %s, true)"
            # No conflict target: the unique index is on lower(email), and two workers (or
            # instances) starting at once both find the table empty; the second insert is a
            # no-op instead of a UniqueViolation that kills its start.
            " on conflict do nothing"
        ).format(users)

    @property
    def secret(self) -> str:
        return self._secret

    async def login(self, email: object, password: object) -> TokenPair:
        email_s, password_s = login_credentials(email, password)
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._q_user_by_email, (email_s, email_s))
            row = await cur.fetchone()
        stored_hash = row[1] if row else None
        # The password is verified before the account state is revealed (upstream-gaps S11).
        ok = await passwords.verify_password(password_s, stored_hash, self._policy.bcrypt_cost)
        if not ok or row is None:
            raise Unauthorized("Invalid email or password")
        user_id, _, roles, active = row
        if active is False:
            raise Unauthorized("Account is disabled")
        if passwords.needs_rehash(stored_hash or "", self._policy.bcrypt_cost):
            new_hash = await passwords.hash_password(password_s, self._policy.bcrypt_cost)
            async with self._pool.connection() as conn:
                await conn.execute(self._q_rehash, (new_hash, user_id))
        default_password = password_s in self._default_passwords
        if default_password:
            log.warning("login with the default password; change it", email=email_s)
        return await self._issue(user_id, list(roles or []), uuid.uuid4(), default_password)

    async def refresh(self, refresh_token: object) -> TokenPair:
        token = _text(refresh_token)
        if not token:
            raise Unauthorized("Refresh token is required")
        digest = tokens.refresh_token_digest(token)
        failure: str | None = None
        pair: TokenPair | None = None
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._q_refresh_for_update, (digest,))
            row = await cur.fetchone()
            if row is None:
                failure = "Invalid refresh token"
            else:
                row_id, user_id, family_id, expires_at, rotated_at, roles, active = row
                if rotated_at is not None:
                    # A rotated token came back: whoever holds the family is not trusted.
                    await conn.execute(self._q_delete_family, (family_id,))
                    log.warning(
                        "refresh token reuse detected; family revoked", user_id=str(user_id)
                    )
                    failure = "Invalid refresh token"
                elif expires_at <= datetime.now(UTC):
                    await conn.execute(self._q_delete_row, (row_id,))
                    failure = "Refresh token expired"
                elif active is False:
                    failure = "Account is disabled"
                else:
                    await conn.execute(self._q_rotate, (row_id,))
                    pair = await self._issue(
                        user_id, list(roles or []), family_id or uuid.uuid4(), False, conn
                    )
        if failure is not None or pair is None:
            raise Unauthorized(failure or "Invalid refresh token")
        return pair

    async def logout(self, refresh_token: object) -> None:
        token = _text(refresh_token)
        if not token:
            raise Unauthorized("Refresh token is required")
        digest = tokens.refresh_token_digest(token)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._q_family_of, (digest,))
            row = await cur.fetchone()
            if row is not None and row[0] is not None:
                await conn.execute(self._q_delete_family, (row[0],))

    async def issue_for(self, user_id: Any, roles: list[str]) -> TokenPair:
        """A token pair in a new refresh family for a user who proved who they are another way
        (an accepted invite)."""
        return await self._issue(user_id, roles, uuid.uuid4(), False)

    async def purge_expired_refresh_tokens(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._q_purge)
            return int(cur.rowcount)

    async def seed_admin(self, email: str, password: str, roles: list[str]) -> bool:
        """Create the first account when the users table is empty; True when it did."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._q_count_users)
            row = await cur.fetchone()
            if row and row[0] > 0:
                return False
            pw_hash = await passwords.hash_password(password, self._policy.bcrypt_cost)
            cur = await conn.execute(self._q_seed, (email, pw_hash, roles))
            return bool(cur.rowcount == 1)

    async def _issue(
        self,
        user_id: Any,
        roles: list[str],
        family_id: uuid.UUID,
        default_password: bool,
        conn: Any = None,
    ) -> TokenPair:
        access = tokens.issue_access_token(
            self._secret, str(user_id), roles, self._policy.access_ttl
        )
        refresh = tokens.new_refresh_token()
        expires = datetime.now(UTC) + timedelta(seconds=self._policy.refresh_ttl)
        params = (user_id, tokens.refresh_token_digest(refresh), family_id, expires)
        if conn is not None:
            await conn.execute(self._q_insert_refresh, params)
        else:
            async with self._pool.connection() as own:
                await own.execute(self._q_insert_refresh, params)
        return TokenPair(access, refresh, default_password)
