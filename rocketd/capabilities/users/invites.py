"""Invites (`_invites`): an admin invites an email with roles; the invitee accepts with a password
and is logged in (spec auth-permissions.md "Invites" and "accept-invite").

Tokens are UUID v4 strings, as the spec says (122 random bits from the OS generator). Only their
SHA-256 digest is stored, in the `token` column (upstream-gaps S12), so the raw token is shown
exactly once: in the answer of the create (or bulk create) that made it. The list answers
`"token": null` (upstream lists the tokens; a database dump or a leaked admin listing must not
hand out working invitations). An invite is single use (`accepted_at`, checked and set under a
row lock) and expires `INVITE_TTL` after it was made.

Emails compare case-insensitively (rocketd.auth.emails): an invite for `U1@x.io` is refused when
user `u1@x.io` exists or is invited. Creating an invite, and accepting one, take the email's
transaction-scoped advisory lock (the same one the users admin takes), so two concurrent requests
cannot both pass the "already exists" checks. The accepted password must pass the password policy
with the invite's email (it may not be that email, nor its local part).

Accepting is a login-like attempt: the HTTP edge runs it inside the login throttle, per client
address (rocketd.auth.throttle), so invite tokens cannot be tried at speed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.auth import passwords
from rocketd.auth.emails import lock_email
from rocketd.capabilities.permissions import Problems, parse_roles, reject_unknown
from rocketd.capabilities.users.users import (
    EMAIL_TAKEN,
    PasswordPolicy,
    check_email,
    check_password,
    email_taken,
)
from rocketd.engine.admin import AdminCall, Change, MetadataKind, Row, row_uuid
from rocketd.errors import Conflict, ErrorDetail, InvalidPayload, NotFound, ValidationFailed
from rocketd.timestamps import iso_utc

INVITE_TTL: Final = timedelta(hours=72)
MAX_BULK_EMAILS: Final = 1000
MAX_TOKEN_LENGTH: Final = 200
INVITE_KEYS: Final = ("email", "roles")
BULK_KEYS: Final = ("emails", "roles")
ACCEPT_KEYS: Final = ("token", "password")
PENDING_EXISTS: Final = "A pending invite already exists for this email"
INSERT_FAILED: Final = "Insert failed: {error}"


def new_invite_token() -> str:
    return str(uuid.uuid4())


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_json(row: Mapping[str, Any], token: str | None = None) -> dict[str, Any]:
    """An invite; `token` is the raw token when it was just made, else null (only a digest is
    stored)."""
    invited_by = row["invited_by"]
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "roles": list(row["roles"] or []),
        "token": token,
        "expires_at": iso_utc(row["expires_at"]),
        "accepted_at": iso_utc(row["accepted_at"]),
        "invited_by": None if invited_by is None else str(invited_by),
        "created_at": iso_utc(row["created_at"]),
    }


# --- admin operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InviteInput:
    email: str
    roles: tuple[str, ...]


def _roles(body: Mapping[str, Any], problems: Problems) -> tuple[str, ...]:
    raw = body.get("roles")
    return () if raw is None else parse_roles(raw, "roles", problems)


def parse_invite_body(body: Mapping[str, Any]) -> InviteInput:
    reject_unknown(body, INVITE_KEYS, frozenset())
    problems = Problems()
    email = body.get("email")
    if email is None or email == "":
        problems.add("email", "email is required", "required")
    elif not isinstance(email, str):
        problems.wrong_type("email", "a string")
    else:
        check_email(email, problems)
    roles = _roles(body, problems)
    problems.raise_if_any()
    return InviteInput(str(email), roles)


def parse_bulk_body(body: Mapping[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """(the trimmed, lower-cased, de-duplicated emails in first-seen order, the roles)."""
    reject_unknown(body, BULK_KEYS, frozenset())
    problems = Problems()
    raw = body.get("emails")
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed(
            "emails is required and must be a non-empty array",
            [ErrorDetail("emails is required and must be a non-empty array", "emails", "required")],
        )
    if len(raw) > MAX_BULK_EMAILS:
        message = f"emails may hold at most {MAX_BULK_EMAILS} entries"
        raise ValidationFailed(message, [ErrorDetail(message, "emails", "max_items")])
    emails: list[str] = []
    blank = False
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            problems.wrong_type(f"emails[{index}]", "a string")
            continue
        email = item.strip().lower()
        if not email:
            blank = True
            continue
        check_email(email, problems, f"emails[{index}]")
        if email not in emails:
            emails.append(email)
    roles = _roles(body, problems)
    if problems.types:
        problems.raise_if_any()
    if blank:
        message = "emails must not contain blank entries"
        raise ValidationFailed(message, [ErrorDetail(message, "emails", "required")])
    problems.raise_if_any()
    return emails, roles


async def _refusal(conn: AsyncConnection[Any], email: str) -> str | None:
    """Why no invite may be made for `email` now, or None (call under `lock_email`)."""
    if await email_taken(conn, email):
        return EMAIL_TAKEN
    cur = await conn.execute(
        "select 1 from _invites where lower(email) = lower(%s) and accepted_at is null"
        " and expires_at > now() limit 1",
        (email,),
    )
    if await cur.fetchone() is not None:
        return PENDING_EXISTS
    return None


async def _insert(
    conn: AsyncConnection[Any], email: str, roles: tuple[str, ...], invited_by: uuid.UUID | None
) -> dict[str, Any]:
    token = new_invite_token()
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "insert into _invites (email, roles, token, expires_at, invited_by)"
        " values (%s, %s, %s, now() + %s, %s) returning id, email, roles, expires_at, accepted_at, invited_by, created_at",
        (email, list(roles), token_digest(token), INVITE_TTL, invited_by),
    )
    row = await cur.fetchone()
    assert row is not None
    return invite_json(row, token)


def inviter(user_id: str, via_platform: bool) -> uuid.UUID | None:
    """`invited_by`: the admin's app user id; null for a platform admin (not an app user)."""
    return None if via_platform else row_uuid(user_id)


async def create_bulk(
    pool: AsyncConnectionPool[Any], body: Mapping[str, Any], invited_by: uuid.UUID | None
) -> dict[str, Any]:
    emails, roles = parse_bulk_body(body)
    created: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    async with pool.connection() as conn:
        for email in emails:
            invite: dict[str, Any] | None = None
            try:
                async with conn.transaction():
                    await lock_email(conn, email)
                    reason = await _refusal(conn, email)
                    if reason is None:
                        invite = await _insert(conn, email, roles, invited_by)
            except pg_errors.Error as exc:
                # Reported per email, as the spec says; the driver's text is not echoed.
                reason = INSERT_FAILED.format(error=type(exc).__name__)
            if invite is None:
                skipped.append({"email": email, "reason": reason or INSERT_FAILED})
            else:
                created.append({k: invite[k] for k in ("id", "email", "token", "expires_at")})
    return {
        "created": created,
        "skipped": skipped,
        "summary": {"total": len(emails), "created": len(created), "skipped": len(skipped)},
    }


class InviteKind(MetadataKind[InviteInput]):
    """Invites on the generic admin runner: list, create and delete (no get, no PUT). Creating
    one for an email takes that email's lock and refuses (409) an email that has a user or a
    pending invite. The create answers the raw token, once; nothing is announced (invites are
    not cached anywhere)."""

    name = "invites"
    path = "invites"
    table = "_invites"
    label = "Invite"
    columns = ("email", "roles")
    select_columns = ("id", "email", "roles", "expires_at", "accepted_at", "invited_by",
                      "created_at")  # fmt: skip
    list_order = (sql.SQL("created_at desc"), "id")
    operations = frozenset({"list", "create", "delete"})
    in_snapshot = False
    needs_registry = False
    exported = False

    def parse(self, body: object, call: AdminCall) -> InviteInput:
        if not isinstance(body, Mapping):
            raise InvalidPayload("Invalid JSON body")
        return parse_invite_body(body)

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return invite_json(row)

    async def check_unique(self, change: Change, item: InviteInput) -> None:
        await lock_email(change.conn, item.email)
        reason = await _refusal(change.conn, item.email)
        if reason is not None:
            raise Conflict(reason)

    async def insert(self, change: Change, item: InviteInput) -> Row:
        principal = change.call.principal
        invited_by = inviter(principal.user_id, principal.via_platform) if principal else None
        return await _insert(change.conn, item.email, item.roles, invited_by)

    def saved_json(self, item: InviteInput, row: Row) -> Any:
        return {k: v for k, v in row.items() if k != "accepted_at"}  # spec: no accepted_at


INVITES: Final = InviteKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (INVITES,)


# --- accepting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptedUser:
    id: uuid.UUID
    email: str
    roles: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "roles": list(self.roles)}


def _quirk_400(message: str) -> ValidationFailed:
    # The contract's QUIRK: VALIDATION_FAILED with status 400 (not 422).
    return ValidationFailed(message, [ErrorDetail(message, "token", "invite")], status=400)


def parse_accept_body(body: Mapping[str, Any], policy: PasswordPolicy) -> tuple[str, str]:
    reject_unknown(body, ACCEPT_KEYS, frozenset())
    problems = Problems()
    values: dict[str, str] = {}
    for key in ACCEPT_KEYS:
        value = body.get(key)
        if value is None or value == "":
            problems.add(key, f"{key} is required", "required")
        elif not isinstance(value, str):
            problems.wrong_type(key, "a string")
        else:
            values[key] = value
    if "password" in values:
        check_password(values["password"], policy, problems)
    problems.raise_if_any()
    return values["token"], values["password"]


def _check_password_for(email: str, password: str, policy: PasswordPolicy) -> None:
    """The policy's checks that need the invite's email (the others ran on the body)."""
    problems = Problems()
    check_password(password, policy, problems, email)
    problems.raise_if_any()


async def _find_invite(
    conn: AsyncConnection[Any], digest: str, *, lock: bool
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    if lock:
        await cur.execute(
            "select id, email, roles, expires_at, accepted_at from _invites where token = %s"
            " for update",
            (digest,),
        )
    else:
        await cur.execute(
            "select id, email, roles, expires_at, accepted_at from _invites where token = %s",
            (digest,),
        )
    return await cur.fetchone()


def _usable(invite: dict[str, Any] | None) -> dict[str, Any]:
    if invite is None:
        raise NotFound("Invalid invite token")
    if invite["accepted_at"] is not None:
        raise _quirk_400("Invite has already been accepted")
    if invite["expires_at"] <= datetime.now(UTC):
        raise _quirk_400("Invite has expired")
    return invite


async def accept_invite(
    pool: AsyncConnectionPool[Any], token: str, password: str, policy: PasswordPolicy
) -> AcceptedUser:
    """Create the invited user (active, the invite's email and roles, this password) and mark
    the invite accepted, in one transaction. `token` and `password` come from
    `parse_accept_body`; the caller issues the tokens."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise NotFound("Invalid invite token")
    digest = token_digest(token)
    # Refuse bad tokens before spending a bcrypt hash on them; the hash is made outside the
    # transaction (no row lock is held during bcrypt), and the invite is checked again there.
    async with pool.connection() as conn:
        found = _usable(await _find_invite(conn, digest, lock=False))
    _check_password_for(found["email"], password, policy)
    pw_hash = await passwords.hash_password(password, policy.bcrypt_cost)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        invite = _usable(await _find_invite(conn, digest, lock=True))
        roles = tuple(invite["roles"] or ())
        await lock_email(conn, invite["email"])
        if await email_taken(conn, invite["email"]):
            raise Conflict(EMAIL_TAKEN)
        try:
            async with conn.transaction():
                await cur.execute(
                    "insert into _users (email, password_hash, roles, active)"
                    " values (%s, %s, %s, true) returning id",
                    (invite["email"], pw_hash, list(roles)),
                )
                row = await cur.fetchone()
        except pg_errors.UniqueViolation as exc:
            raise Conflict(EMAIL_TAKEN) from exc
        assert row is not None
        await conn.execute("update _invites set accepted_at = now() where id = %s", (invite["id"],))
    return AcceptedUser(row["id"], invite["email"], roles)
