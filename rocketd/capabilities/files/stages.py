"""The files' write stage: before validation, a file id in a `file` field (the record's and its
nested children's, resolved together in one query) becomes the stored file's metadata; an id of
no file of this app is 404 (docs/files.md)."""

from __future__ import annotations

from typing import Final

from rocketd.capabilities.files.files import has_file_fields, resolve_file_ids
from rocketd.engine.snapshot import AppSnapshot
from rocketd.extensions import ALL_MODES, Phase, Stage, WriteContext
from rocketd.metadata.model import Entity


def _has_file_fields(snapshot: AppSnapshot, entity: Entity) -> bool:
    return has_file_fields(snapshot.registry, entity)


async def resolve_files(ctx: WriteContext) -> None:
    if ctx.body is None:
        return
    if ctx.conn is not None:  # a write inside a caller's transaction (system, import)
        ctx.body = await resolve_file_ids(ctx.conn, ctx.registry, ctx.entity, ctx.body)
        return
    async with ctx.app.pool.connection() as conn:  # an API write: PREPARE runs before BEGIN
        ctx.body = await resolve_file_ids(conn, ctx.registry, ctx.entity, ctx.body)


STAGES: Final = (
    Stage(
        "files.resolve_ids",
        Phase.PREPARE,
        30,
        resolve_files,
        applies=_has_file_fields,
        modes=ALL_MODES,
    ),
)
