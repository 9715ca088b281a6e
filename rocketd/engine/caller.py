"""Who is calling: the authenticated principal plus what the request tells about them.

Every kernel operation receives a `Caller` next to its `AppContext`, so that the client address,
user agent and trace id reach audit rows, events and rate limits without widening every
signature. It never holds secrets (no token, no password).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rocketd.auth.principal import ADMIN_ROLE, Principal

SYSTEM_USER_ID: Final = "system"


@dataclass(frozen=True)
class Caller:
    principal: Principal
    ip: str | None = None
    user_agent: str | None = None
    trace_id: str | None = None

    @property
    def user_id(self) -> str:
        return self.principal.user_id


# The identity of writes rocketd makes itself (workflow actions, state-machine `create_record`,
# imported sample data). Permission stages are API-only, so they never judge it.
SYSTEM_CALLER: Final = Caller(Principal(SYSTEM_USER_ID, (ADMIN_ROLE,)))
