"""Emails as account identities: one account per email, whatever its case.

`U1@x.io` and `u1@x.io` are the same person, so every comparison of account emails is
`lower(email) = lower(%s)` (users admin, invites, logins, platform users); the email is stored as
it was given. Every path that makes or renames an account (or an invite) checks under `lock_email`,
a transaction-scoped advisory lock on the lower-cased email, so two concurrent requests cannot both
pass the "is it taken?" check. The database's unique `lower(email)` index backs this up where it
can be made (rocketd.db.email_index); where old case-duplicates stop it, this check alone holds,
and a login picks the exact spelling first, then the oldest account.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import AsyncConnection

_LOCK_PREFIX: Final = "rocketd:email:"


async def lock_email(conn: AsyncConnection[Any], email: str) -> None:
    """Serialise, until the transaction ends, everything that makes an account (or an invite)
    for `email` in any case."""
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(lower(%s), 0))", (_LOCK_PREFIX + email,)
    )
