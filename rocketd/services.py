"""The process-wide services a request handler may reach, built once by the runtime.

Handlers get this object from the aiohttp application (`SERVICES` key); nothing else in rocketd
keeps global state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from rocketd.auth.accounts import AccountService
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
    directory: AppDirectory
    supervisor: Supervisor
    platform_secret: str = field(repr=False, default="")
    # the installed capabilities (their routes, their metadata kinds)
    capabilities: tuple[Capability, ...] = ()
