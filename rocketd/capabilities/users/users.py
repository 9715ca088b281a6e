"""App users (`_users`): the admin operations, the password policy, and the per-request check
that the user behind a token still exists and is active.

Admin operations (spec auth-permissions.md "Users admin"), a kind on the generic admin runner:

- the password hash is never selected into a response and never logged; passwords are checked
  against the policy (`auth.password_min_length`, bcrypt's 72-byte limit, not one of the commonest
  passwords, not the user's own email or its local part) with a 422 naming the rule;
- emails are unique whatever their case (rocketd.auth.emails): create and rename check under the
  email's advisory lock and answer 409 for `U1@x.io` when `u1@x.io` exists;
- PUT keeps the stored value of every key it does not send (upstream-gaps C28: upstream writes
  NULL into `active` and `[]` into `roles`); `password` changes only when a non-empty one is sent;
- DELETE is a hard delete (refresh tokens go with it by FK cascade);
- deactivating a user or changing their password also revokes their refresh tokens;
- every change announces `UserChanged(<id>)` on the app database's notice channel in its own
  transaction, so every instance drops that user from its `UserStates` cache
  (`rocketd/auth/user_states.py`) at commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from rocketd.auth import passwords
from rocketd.auth.emails import lock_email
from rocketd.auth.password_policy import email_problem, password_problem
from rocketd.capabilities.permissions import Problems, parse_roles, reject_unknown
from rocketd.config import Settings
from rocketd.db.notify import Notice, UserChanged
from rocketd.engine.admin import AdminCall, Change, MetadataKind, Operation, Row
from rocketd.errors import Conflict, InvalidPayload
from rocketd.timestamps import iso_utc

USER_KEYS: Final = ("email", "password", "roles", "active")
READ_ONLY_KEYS: Final = frozenset({"id", "created_at", "updated_at"})
EMAIL_TAKEN: Final = "A user with this email already exists"


# --- validation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int
    bcrypt_cost: int


def check_password(
    password: str, policy: PasswordPolicy, problems: Problems, email: str | None = None
) -> None:
    """The password policy (rocketd.auth.password_policy) for a password being set (for the
    account of `email`, when known)."""
    problem = password_problem(password, policy.min_length, email)
    if problem is not None:
        problems.add("password", *problem)


def check_email(email: str, problems: Problems, where: str = "email") -> None:
    problem = email_problem(email, where)
    if problem is not None:
        problems.add(where, *problem)


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


# --- the admin kind ------------------------------------------------------------------------------


def password_policy(settings: Settings) -> PasswordPolicy:
    return PasswordPolicy(settings.auth.password_min_length, settings.auth.bcrypt_cost)


def user_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "roles": list(row["roles"] or []),
        "active": row["active"] is not False,
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


class UserKind(MetadataKind[UserInput]):
    """App users on the generic admin runner. Not metadata of the snapshot: a change announces
    `UserChanged(id)` (update and delete) instead, so every instance drops the user's cached
    state. The password is hashed before the transaction begins (no lock is held during bcrypt),
    and a bad PUT body is refused (422) before an unknown id is (404)."""

    name = "users"
    path = "users"
    table = "_users"
    label = "User"
    columns = ("email", "roles", "active")
    select_columns = ("id", "email", "roles", "active", "created_at", "updated_at")
    list_order = ("email", "id")
    in_snapshot = False
    needs_registry = False
    exported = False

    def parse(self, body: object, call: AdminCall) -> UserInput:
        if not isinstance(body, Mapping):
            raise InvalidPayload("Invalid JSON body")
        return parse_user_body(body, password_policy(call.settings), creating=True)

    def check_body(self, body: Mapping[str, Any], raw_key: str, call: AdminCall) -> None:
        parse_user_body(body, password_policy(call.settings), creating=False)

    def parse_update(self, body: Mapping[str, Any], stored: Row, call: AdminCall) -> UserInput:
        # a new password alone is checked against the email the user already has
        return parse_user_body(
            body, password_policy(call.settings), creating=False, stored_email=stored["email"]
        )

    async def check_unique(self, change: Change, item: UserInput) -> None:
        """Emails are unique whatever their case (`auth.emails`): checked under the lower-cased
        email's advisory lock, so two creates of `U1@x.io` and `u1@x.io` cannot both pass."""
        if item.email is None:
            return
        await lock_email(change.conn, item.email)
        if await email_taken(change.conn, item.email, change.key):
            raise Conflict(EMAIL_TAKEN)

    async def prepare(self, body: Mapping[str, Any], call: AdminCall) -> str | None:
        """The new password's hash (None: the body sets no password)."""
        password = body.get("password")
        if not isinstance(password, str) or not password:
            return None
        return await passwords.hash_password(password, call.settings.auth.bcrypt_cost)

    def conflict(self, item: UserInput) -> Conflict:
        return Conflict(EMAIL_TAKEN)

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return user_json(row)

    def notices(self, change: Change, operation: Operation) -> tuple[Notice, ...]:
        return () if operation == "create" else (UserChanged(str(change.key)),)

    async def insert(self, change: Change, item: UserInput) -> Row:
        cur = change.conn.cursor(row_factory=dict_row)
        await cur.execute(
            "insert into _users (email, password_hash, roles, active) values (%s, %s, %s, %s)"
            " returning id, email, roles, active, created_at, updated_at",
            (
                item.email,
                change.prepared,
                list(item.roles or ()),
                True if item.active is None else item.active,
            ),
        )
        return _written(await cur.fetchone())

    async def update_row(self, change: Change, item: UserInput) -> Row:
        """Sent keys replace, absent keys keep the stored values (C28)."""
        stored = change.stored or {}
        active = stored["active"] is not False if item.active is None else item.active
        cur = change.conn.cursor(row_factory=dict_row)
        await cur.execute(
            "update _users set email = %s, roles = %s, active = %s,"
            " password_hash = coalesce(%s, password_hash), updated_at = now()"
            " where id = %s returning id, email, roles, active, created_at, updated_at",
            (
                stored["email"] if item.email is None else item.email,
                list(stored["roles"] or []) if item.roles is None else list(item.roles),
                active,
                change.prepared,
                change.key,
            ),
        )
        row = _written(await cur.fetchone())
        if change.prepared is not None or not active:
            # A new password or a disabled account ends every session of the user.
            await change.conn.execute(
                "delete from _refresh_tokens where user_id = %s", (change.key,)
            )
        return row


async def email_taken(conn: AsyncConnection[Any], email: str, except_id: Any = None) -> bool:
    """Whether another user has `email` in any case (call under `lock_email`)."""
    cur = await conn.execute(
        "select 1 from _users where lower(email) = lower(%s) and id is distinct from %s limit 1",
        (email, except_id),
    )
    return await cur.fetchone() is not None


def _written(row: Row | None) -> Row:
    if row is None:
        raise RuntimeError("INSERT/UPDATE ... RETURNING returned no row")
    return row


USERS: Final = UserKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (USERS,)
