"""Whether the user behind a token still exists and is active: a brief per-app cache.

`UserStates` keeps (active, roles) per user id for `USER_STATE_TTL_SECONDS` at most. The auth
middleware asks it on every authenticated request, so a deleted or deactivated user's access token
stops working at once on the instance that made the change, within the notification latency on the
others (a `UserChanged` notice drops the entry), and within the TTL even if a notification were
lost. Roles removed from a user stop counting the same way (the token's roles are intersected with
the stored ones); roles added count from the next token refresh.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

USER_STATE_TTL_SECONDS: Final = 5.0


def _uuid(raw: str) -> uuid.UUID | None:
    if len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


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
