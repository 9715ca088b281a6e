"""Slugs: deriving a URL-friendly slug from a source value, and storing it without duplicates.

`slugify` is pure. `store_with_unique_slug` is the one place that awaits: it runs a caller-supplied
write (an INSERT or UPDATE carrying the candidate slug) inside a SAVEPOINT and moves on to the
next candidate when the slug's unique index rejects it (spec upstream-gaps C32: no check-then-insert
race, and the caller's outer transaction survives every failed attempt). This module knows nothing
about SQL text or index names: the caller says which unique violations are slug collisions.
"""

from __future__ import annotations

import re
import secrets
import string
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar

from psycopg import AsyncConnection
from psycopg import errors as pg_errors

from rocketd.errors import Conflict, ErrorDetail

# `{slug}`, then `{slug}-2` .. `{slug}-100` (spec), then a few random base36 suffixes.
LAST_NUMBERED_SUFFIX: Final = 100
RANDOM_SUFFIX_ATTEMPTS: Final = 5
RANDOM_SUFFIX_LENGTH: Final = 6

_BASE36: Final = string.digits + string.ascii_lowercase
_NOT_SLUG_CHARS: Final = re.compile(r"[^a-z0-9]+")

T = TypeVar("T")


def slugify(text: str) -> str:
    """`"Crème Brûlée 2!"` -> `"creme-brulee-2"`: NFD, drop combining marks, lowercase, every run
    of characters outside `[a-z0-9]` becomes one `-`, no leading or trailing `-`."""
    decomposed = unicodedata.normalize("NFD", text)
    unmarked = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return _NOT_SLUG_CHARS.sub("-", unmarked.lower()).strip("-")


def random_suffix() -> str:
    return "".join(secrets.choice(_BASE36) for _ in range(RANDOM_SUFFIX_LENGTH))


def slug_candidates(base: str) -> Iterator[str]:
    """The slugs to try, in order: the base, the numbered suffixes, then random suffixes."""
    yield base
    for n in range(2, LAST_NUMBERED_SUFFIX + 1):
        yield f"{base}-{n}"
    for _ in range(RANDOM_SUFFIX_ATTEMPTS):
        yield f"{base}-{random_suffix()}"


async def store_with_unique_slug(
    conn: AsyncConnection[Any],
    base: str,
    write: Callable[[str], Awaitable[T]],
    *,
    is_slug_collision: Callable[[pg_errors.UniqueViolation], bool],
    field: str,
) -> T:
    """Run `write(candidate)` for each candidate slug until one is accepted; return its result.

    Each attempt runs in its own SAVEPOINT, so a collision only rolls back that attempt. A unique
    violation that is not a slug collision (another unique field) propagates unchanged, as does
    any other error. Runs inside the caller's transaction.
    """
    for candidate in slug_candidates(base):
        try:
            async with conn.transaction():
                return await write(candidate)
        except pg_errors.UniqueViolation as exc:
            if not is_slug_collision(exc):
                raise
    message = f"Could not find a free {field} for {base!r}"
    raise Conflict(message, [ErrorDetail(message, field, "unique")])
