"""Saving workflow definitions (`_workflows`) and the snapshot's `WorkflowBook`.

Same pattern as `rules_admin`: each change runs in one transaction under the app's metadata
advisory lock, is validated against the entities as stored now, and commits with the metadata
NOTIFY so every instance reloads. A PUT keeps every key it omits. Names are unique (409).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.workflows.model import (
    ROW_KEYS,
    Workflow,
    parse_workflow,
    workflow_problems_in,
)
from rocketd.engine.metadata_admin import _iso, _lock, _notify, load_registry
from rocketd.errors import Conflict, NotFound
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry

COLUMNS = ("name", "trigger", "context", "steps", "active")


@dataclass(frozen=True)
class WorkflowBook:
    """The active, valid workflows of an app: by id, and by trigger entity."""

    by_id: Mapping[str, Workflow] = field(default_factory=dict)
    by_entity: Mapping[str, tuple[Workflow, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def for_entity(self, entity: str) -> tuple[Workflow, ...]:
        return self.by_entity.get(entity, ())


EMPTY_WORKFLOW_BOOK = WorkflowBook()


def _row_body(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), **{c: row[c] for c in COLUMNS}}


async def load_workflow_book(conn: AsyncConnection[Any], registry: Registry) -> WorkflowBook:
    """Every stored definition that still parses and fits the registry (others in `problems`)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("select * from _workflows order by name")
    by_id: dict[str, Workflow] = {}
    by_entity: dict[str, list[Workflow]] = {}
    problems: list[str] = []
    for row in await cur.fetchall():
        try:
            workflow = parse_workflow(_row_body(row))
        except MetadataError as exc:
            problems.append(f"workflow {row['name']}: {exc.message}")
            continue
        found = workflow_problems_in(registry, workflow)
        if found:
            problems.append(f"workflow {row['name']}: " + "; ".join(d.message for d in found))
            continue
        by_id[str(row["id"])] = workflow
        if workflow.active:
            by_entity.setdefault(workflow.trigger.entity, []).append(workflow)
    return WorkflowBook(
        by_id=by_id,
        by_entity={k: tuple(v) for k, v in by_entity.items()},
        problems=tuple(problems),
    )


def row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_row_body(row),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _not_found(raw_id: str) -> NotFound:
    return NotFound(f"Workflow not found: {raw_id}")


def _row_id(raw_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw_id)
    except ValueError:
        raise _not_found(raw_id) from None


def _values(workflow: Workflow) -> tuple[Any, ...]:
    return (
        workflow.name,
        Jsonb(dict(workflow.raw_trigger)),
        Jsonb(dict(workflow.context)),
        Jsonb(list(workflow.raw_steps)),
        workflow.active,
    )


def _validate(registry: Registry, workflow: Workflow) -> None:
    problems = workflow_problems_in(registry, workflow)
    if problems:
        raise MetadataError(problems)


def _duplicate(name: str) -> Conflict:
    return Conflict(f"A workflow named {name} already exists")


async def list_workflows(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _workflows order by name")
        return [row_json(r) for r in await cur.fetchall()]


async def get_workflow(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    row_id = _row_id(raw_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _workflows where id = %s", (row_id,))
        row = await cur.fetchone()
    if row is None:
        raise _not_found(raw_id)
    return row_json(row)


async def create_workflow(pool: AsyncConnectionPool[Any], app_name: str, body: object) -> Workflow:
    workflow = parse_workflow(body)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await _lock(conn)
                _validate(await load_registry(conn), workflow)
                cur = await conn.execute(
                    "insert into _workflows (name, trigger, context, steps, active)"
                    " values (%s, %s, %s, %s, %s) returning id",
                    _values(workflow),
                )
                row = await cur.fetchone()
                await _notify(conn, app_name)
        except errors.UniqueViolation:
            raise _duplicate(workflow.name) from None
    assert row is not None
    return replace(workflow, id=str(row[0]))


async def update_workflow(
    pool: AsyncConnectionPool[Any], app_name: str, raw_id: str, body: Mapping[str, Any]
) -> Workflow:
    row_id = _row_id(raw_id)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await _lock(conn)
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute("select * from _workflows where id = %s for update", (row_id,))
                stored = await cur.fetchone()
                if stored is None:
                    raise _not_found(raw_id)
                merged = {c: stored[c] for c in COLUMNS}
                merged.update({k: v for k, v in body.items() if k not in ROW_KEYS})
                workflow = parse_workflow(merged)
                _validate(await load_registry(conn), workflow)
                await conn.execute(
                    "update _workflows set name = %s, trigger = %s, context = %s, steps = %s,"
                    " active = %s, updated_at = now() where id = %s",
                    (*_values(workflow), row_id),
                )
                await _notify(conn, app_name)
        except errors.UniqueViolation:
            raise _duplicate(str(body.get("name"))) from None
    return replace(workflow, id=str(row_id))


async def delete_workflow(pool: AsyncConnectionPool[Any], app_name: str, raw_id: str) -> None:
    """Deletes the definition; its instances go with it (FK cascade)."""
    row_id = _row_id(raw_id)
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = await conn.execute("delete from _workflows where id = %s returning id", (row_id,))
        if await cur.fetchone() is None:
            raise _not_found(raw_id)
        await _notify(conn, app_name)
