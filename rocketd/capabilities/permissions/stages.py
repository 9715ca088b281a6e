"""The permissions' write stages and read scope (spec auth-permissions.md; see access.py).

- PREPARE (the request's record): the caller needs a grant for the action on the entity (403),
  before the body is even validated;
- BEFORE_WRITE / BEFORE_DELETE (every record, nested children included): a child needs a grant
  for its own entity and action; an update or delete counts only the policies whose `conditions`
  hold on the stored row, locked in the transaction (403 when none);
- AFTER_WRITE: one policy of that scope must have its `check` hold on the written record (403
  rolls the whole write back);
- BEFORE_LINKS: linking or unlinking records of another entity needs `read` on it.

API writes only: writes rocketd makes itself (workflow actions, imports) are not the caller's.
Admins bypass all of it (their grant is unconditional, so nothing is read for them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rocketd.capabilities.permissions.access import (
    EMPTY_PERMISSIONS,
    Access,
    Action,
    Grant,
    PermissionSet,
    Scope,
)
from rocketd.engine.read.query import IncludeSpec
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.sql.compose import IncludeWhere, RowFilter
from rocketd.engine.write.nested import TARGET_ALIAS
from rocketd.extensions import Caller, Phase, ReadScope, SnapshotKey, Stage, WriteContext
from rocketd.extensions import WriteMode as Mode
from rocketd.metadata.model import Entity

PERMISSIONS: SnapshotKey[PermissionSet] = SnapshotKey("permissions", EMPTY_PERMISSIONS)

_GRANT: Final = object()  # scratch keys of one write
_SCOPE: Final = object()


def access_of(ctx: WriteContext) -> Access:
    return Access(ctx.snapshot[PERMISSIONS], ctx.caller.principal)


def _permission(ctx: WriteContext) -> Action:
    return ctx.action


async def grant(ctx: WriteContext) -> None:
    """The request's grant, before anything else is looked at."""
    access = access_of(ctx)
    found = access.grant(ctx.entity.name, _permission(ctx))
    ctx.scratch[_GRANT] = found
    if ctx.action == "create":
        ctx.scratch[_SCOPE] = access.create_scope(found)


async def conditions(ctx: WriteContext) -> None:
    """The policies that count for this write: create's grant, or those whose conditions hold
    on the stored row (update, delete)."""
    access = access_of(ctx)
    found: Grant | None = ctx.scratch.get(_GRANT)
    if found is None:  # a nested child: its own grant
        found = access.grant(ctx.entity.name, _permission(ctx))
        if ctx.action == "create":
            ctx.scratch[_SCOPE] = access.create_scope(found)
    if ctx.action == "create":
        return
    scope: Scope = None
    if not found.unchecked:
        stored = await ctx.load_stored()
        if stored is None:
            return  # the executor answers 404 for it
        scope = access.stored_scope(found, ctx.entity, stored)
    ctx.scratch[_SCOPE] = scope


async def check(ctx: WriteContext) -> None:
    """The written record must pass one `check` of the policies that count."""
    scope: Scope = ctx.scratch.get(_SCOPE)
    if scope is None:
        return
    record = await ctx.load_record()
    if record is None:
        return
    access_of(ctx).check_result(scope, ctx.action, ctx.entity, record)


async def links(ctx: WriteContext) -> None:
    """Links of a many-to-many write: the caller must be able to read the linked entity (403),
    and only rows its read filter shows can be linked or unlinked; a hidden id then answers
    exactly like a missing one."""
    access = access_of(ctx)
    found = access.grant(ctx.entity.name, "read")
    ctx.link_filter = access.read_filter(found, ctx.entity, TARGET_ALIAS)


class AccessScope:
    """The read path's `ReadScope` for one caller: the policies' row filters."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def row_filter(self, entity: Entity, qualifier: str | None = None) -> RowFilter | None:
        return self.access.read_filter(self.access.grant(entity.name, "read"), entity, qualifier)

    def includes(self, specs: Sequence[IncludeSpec], raw: str | None) -> tuple[IncludeSpec, ...]:
        return self.access.readable_includes(specs, raw)

    def include_where(self) -> IncludeWhere | None:
        return self.access.include_where()


def read_scope(snapshot: AppSnapshot, caller: Caller) -> ReadScope:
    return AccessScope(Access(snapshot[PERMISSIONS], caller.principal))


STAGES = (
    Stage("permissions.grant", Phase.PREPARE, 10, grant, modes=Mode.API),
    Stage(
        "permissions.conditions",
        Phase.BEFORE_WRITE,
        10,
        conditions,
        modes=Mode.API,
        children=True,
        batch_safe=True,  # a create reads nothing; an update is never batched
    ),
    Stage(
        "permissions.delete_conditions",
        Phase.BEFORE_DELETE,
        10,
        conditions,
        modes=Mode.API,
        children=True,
    ),
    Stage(
        "permissions.check",
        Phase.AFTER_WRITE,
        10,
        check,
        modes=Mode.API,
        children=True,
        batch_safe=True,  # reads the written record only
    ),
    Stage("permissions.links", Phase.BEFORE_LINKS, 10, links, modes=Mode.API, children=True),
)
