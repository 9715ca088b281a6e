"""The process-wide services a request handler may reach, built once by the runtime.

Handlers get this object from the aiohttp application (`SERVICES` key). Capabilities' own
process services (the webhooks' outbound policy, the files' storage backend, ...) are typed
`ServiceKey`s that every `AppContext` reaches (`app.service(KEY)`), provided at start.

What else lives at module level is deliberate and stateless from a caller's view: bounded caches
of pure computations keyed by immutable objects (verified access tokens, keyed by token and
checked against the signer's secret: `auth/tokens.py`; compiled statements and parsed list
queries per immutable `Entity`: `engine/sql/compose.py`, `engine/read/query.py`; compiled
expressions and patterns: `expressions/`). None of them changes what an answer is, only how
fast it comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from rocketd.auth.accounts import AccountService
from rocketd.auth.throttle import LoginThrottle
from rocketd.config import Settings

if TYPE_CHECKING:
    from rocketd.actors.directory import AppDirectory
    from rocketd.actors.supervisor import Supervisor
    from rocketd.extensions import Capability


@dataclass
class Services:
    settings: Settings
    management_pool: AsyncConnectionPool[Any]
    platform_accounts: AccountService
    # Failed-attempt throttling of every login-like endpoint, shared through the database.
    login_throttle: LoginThrottle
    directory: AppDirectory
    supervisor: Supervisor
    platform_secret: str = field(repr=False, default="")
    # the installed capabilities (their routes, their metadata kinds)
    capabilities: tuple[Capability, ...] = ()
