"""The case-insensitive email index of an accounts table (`_users`, `_platform_users`).

Emails are one account whatever their case (rocketd.auth.emails enforces it in code). The unique
index on `lower(email)` is the database's half of that rule, and it can only be made on a table
without case-duplicates. Tables from before the rule may hold such pairs: the upgrade must not fail
on them, so `ensure_case_insensitive_index` then makes a plain `lower(email)` index instead (logins
stay indexed) and returns the pairs, which are reported at every start (`report_duplicates`) and
by `rocketd check-config`. Once an admin has renamed or deleted one of each pair, the next start
makes the unique index and drops the plain one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors

from rocketd.logging import get_logger

log = get_logger("rocketd.db.email_index")

_INDEX_LOCK: Final = "rocketd:email-index"


@dataclass(frozen=True)
class CaseDuplicate:
    """Accounts whose emails differ only in case."""

    email: str  # lower-cased
    spellings: tuple[str, ...]


def unique_index_name(table: str) -> str:
    return f"{table}_email_lower_key"


def lookup_index_name(table: str) -> str:
    return f"{table}_email_lower_idx"


async def case_duplicates(conn: AsyncConnection[Any], table: str) -> list[CaseDuplicate]:
    cur = await conn.execute(
        sql.SQL(
            'select lower(email), array_agg(email order by email collate "C") from {}'
            ' group by lower(email) having count(*) > 1 order by lower(email) collate "C"'
        ).format(sql.Identifier(table))
    )
    return [CaseDuplicate(row[0], tuple(row[1])) for row in await cur.fetchall()]


async def _index_exists(conn: AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute("select to_regclass(%s) is not null", (name,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def ensure_case_insensitive_index(
    conn: AsyncConnection[Any], table: str
) -> list[CaseDuplicate]:
    """Make the unique `lower(email)` index of `table` unless case-duplicates stand in the way;
    return those duplicates (empty when the index is there). Runs in its own transaction on a
    connection that is not in one, or inside the caller's."""
    unique = unique_index_name(table)
    lookup = lookup_index_name(table)
    async with conn.transaction():
        if await _index_exists(conn, unique):
            return []
        # Two instances starting at once: one makes the index, the other finds it made.
        await conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (_INDEX_LOCK,))
        if await _index_exists(conn, unique):
            return []
        duplicates = await case_duplicates(conn, table)
        if not duplicates:
            try:
                async with conn.transaction():
                    await conn.execute(
                        sql.SQL("create unique index {} on {} (lower(email))").format(
                            sql.Identifier(unique), sql.Identifier(table)
                        )
                    )
                    await conn.execute(
                        sql.SQL("drop index if exists {}").format(sql.Identifier(lookup))
                    )
                    return []
            except pg_errors.UniqueViolation:
                # A duplicate arrived between the check and the index: report it next time.
                duplicates = await case_duplicates(conn, table)
        await conn.execute(
            sql.SQL("create index if not exists {} on {} (lower(email))").format(
                sql.Identifier(lookup), sql.Identifier(table)
            )
        )
        return duplicates


def describe(duplicates: list[CaseDuplicate], limit: int = 20) -> str:
    shown = "; ".join(" / ".join(d.spellings) for d in duplicates[:limit])
    more = f" (and {len(duplicates) - limit} more)" if len(duplicates) > limit else ""
    return shown + more


def report_duplicates(duplicates: list[CaseDuplicate], where: str) -> None:
    """Log the case-duplicates of one accounts table (nothing when there are none)."""
    if not duplicates:
        return
    log.warning(
        "accounts whose emails differ only in case: a login picks the exact spelling first;"
        " rename or delete one of each group, and the next start adds the unique index",
        where=where,
        groups=len(duplicates),
        emails=describe(duplicates),
    )
