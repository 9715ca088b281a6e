"""The process-wide services a request handler may reach, built once by the runtime.

Handlers get this object from the aiohttp application (`SERVICES` key); nothing else in rocketd
keeps global state.
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
