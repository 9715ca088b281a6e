"""UI configs (`_ui_configs`): opaque per-entity JSON for admin and client UIs, unique on
(`entity`, `scope`). The admin kind (on the generic runner, `engine.admin`) plus the reads every
authenticated user may call.

Not part of the snapshot (nothing on the request path depends on them), so changes need no
NOTIFY: every read goes to the table. The entity must exist when a config is created (the
contract's PUT does not check it), except `_`-names such as `_app`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.engine.admin import AdminCall, Change, MetadataKind, Row, Screened
from rocketd.errors import Conflict, ErrorDetail, InvalidPayload, ValidationFailed
from rocketd.metadata.registry import Registry
from rocketd.timestamps import iso_utc

DEFAULT_SCOPE: Final = "default"
_SELECT: Final = "select id, entity, scope, config, created_at, updated_at from _ui_configs"


@dataclass(frozen=True)
class UiConfig:
    entity: str
    scope: str
    config: Any


def row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "entity": row["entity"],
        "scope": row["scope"],
        "config": row["config"],
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


def _fail(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, [ErrorDetail(message, field, "required")])


def parse_ui_config(body: Mapping[str, Any]) -> UiConfig:
    """`{"entity", "scope"?, "config"?}`: entity a non-empty string, scope a non-empty string
    (default "default"), config any JSON value (default {})."""
    entity = body.get("entity")
    if not isinstance(entity, str) or not entity.strip():
        raise _fail("entity is required", "entity")
    scope = body.get("scope")
    if scope is None or scope == "":
        scope = DEFAULT_SCOPE
    if not isinstance(scope, str):
        raise ValidationFailed(
            "scope must be a string", [ErrorDetail("must be a string", "scope", "type")]
        )
    config = body.get("config")
    return UiConfig(entity, scope, {} if config is None else config)


def entity_problem(registry: Registry, item: UiConfig) -> str | None:
    """The entity must exist, except pseudo-entities whose names start with `_` (e.g. `_app`)."""
    if item.entity.startswith("_") or registry.entity(item.entity) is not None:
        return None
    return f"entity not found: {item.entity}"


async def list_default(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where scope = %s order by entity", (DEFAULT_SCOPE,))
        return [row_json(r) for r in await cur.fetchall()]


async def get_default(pool: AsyncConnectionPool[Any], entity: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " where entity = %s and scope = %s", (entity, DEFAULT_SCOPE))
        row = await cur.fetchone()
    return None if row is None else row_json(row)


class UiConfigKind(MetadataKind[UiConfig]):
    """Not part of the snapshot: changes send no notice and nobody reloads. A PUT replaces the
    row (scope and config default again when omitted); (entity, scope) is unique (409)."""

    name = "ui_configs"
    path = "ui-configs"
    table = "_ui_configs"
    label = "UI config"
    columns = ("entity", "scope", "config")
    select_columns = ("id", "entity", "scope", "config", "created_at", "updated_at")
    list_order = ("entity", "scope")
    put_merges = False
    in_snapshot = False

    def parse(self, body: object, call: AdminCall) -> UiConfig:
        if not isinstance(body, Mapping):
            raise InvalidPayload("Invalid JSON body")
        return parse_ui_config(body)

    def problems_in(
        self, registry: Registry, item: UiConfig, stored: Row | None
    ) -> list[ErrorDetail]:
        """On create only: the contract's PUT checks no entity (spec metadata.md)."""
        problem = None if stored is not None else entity_problem(registry, item)
        return [] if problem is None else [ErrorDetail(problem, "entity", "exists")]

    def values(self, item: UiConfig) -> tuple[Any, ...]:
        return (item.entity, item.scope, Jsonb(item.config))

    def conflict(self, item: UiConfig) -> Conflict:
        return Conflict(f"UI config already exists for entity {item.entity} scope {item.scope}")

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return row_json(row)

    # import: upserted by (entity, scope), never skipped; an item without an entity is ignored
    def screen(self, where: str, raw: object) -> Screened | None:
        if not isinstance(raw, Mapping) or not raw.get("entity"):
            return Screened("ignore", f"{where}: no entity")
        return None

    def problem_label(self, raw: object, item: UiConfig) -> str:
        return item.entity

    def import_problems_in(self, registry: Registry, item: UiConfig) -> list[str]:
        problem = entity_problem(registry, item)
        return [] if problem is None else [problem]

    async def import_write(self, change: Change, item: UiConfig) -> None:
        await upsert(change.conn, item)

    def diff_key(self, item: UiConfig) -> Hashable:
        return (item.entity, item.scope)  # what the import's upsert replaces


UI_CONFIGS: Final = UiConfigKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (UI_CONFIGS,)


async def upsert(conn: AsyncConnection[Any], item: UiConfig) -> None:
    """Import: insert or replace the config of (entity, scope)."""
    await conn.execute(
        "insert into _ui_configs (entity, scope, config) values (%s, %s, %s)"
        " on conflict (entity, scope) do update set config = excluded.config, updated_at = now()",
        (item.entity, item.scope, Jsonb(item.config)),
    )
