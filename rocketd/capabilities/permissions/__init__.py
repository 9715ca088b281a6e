"""Row-level permissions: policies (`_permissions`), the read scope, and the write stages.

Public API for other capabilities: `PERMISSIONS` (the snapshot part), `access_of` (one write's
`Access`), `AccessScope`; role names (`parse_roles`, `reject_unknown`, `Problems`) for the users
capability.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from rocketd.capabilities.permissions.access import PermissionSet, load_permissions
from rocketd.capabilities.permissions.admin import KINDS
from rocketd.capabilities.permissions.model import Problems, parse_roles, reject_unknown
from rocketd.capabilities.permissions.stages import (
    PERMISSIONS,
    STAGES,
    AccessScope,
    access_of,
    read_scope,
)
from rocketd.extensions import Capability, ReadHooks, SnapshotPart
from rocketd.metadata.registry import Registry


async def _load(conn: AsyncConnection[Any], registry: Registry) -> PermissionSet:
    return await load_permissions(conn)


CAPABILITY = Capability(
    name="permissions",
    snapshot_parts=(SnapshotPart(PERMISSIONS, _load),),
    stages=STAGES,
    read_hooks=ReadHooks(row_scope=read_scope),
    kinds=KINDS,
)

__all__ = [
    "CAPABILITY",
    "PERMISSIONS",
    "AccessScope",
    "Problems",
    "access_of",
    "parse_roles",
    "reject_unknown",
]
