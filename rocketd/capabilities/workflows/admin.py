"""The workflow-definition kind (`_workflows`), and the snapshot's `WorkflowBook`.

Definitions run on the generic admin runner (`engine.admin`): each change runs in one
transaction under the app's metadata advisory lock, is validated against the entities as stored
now, and commits with the metadata NOTIFY so every instance reloads. A PUT keeps every key it
omits. Names are unique (409).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from rocketd.capabilities.workflows.model import (
    ROW_KEYS,
    Workflow,
    parse_workflow,
    workflow_problems_in,
)
from rocketd.engine.admin import AdminCall, MetadataKind, Row, raw_text
from rocketd.errors import Conflict, ErrorDetail
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry
from rocketd.timestamps import iso_utc

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


class WorkflowKind(MetadataKind[Workflow]):
    name = "workflows"
    path = "workflows"
    table = "_workflows"
    label = "Workflow"
    columns = COLUMNS
    list_order = ("name",)
    read_only_keys = ROW_KEYS  # also `warnings`, which a GET shows
    import_key_columns = ("name",)

    def parse(self, body: object, call: AdminCall) -> Workflow:
        return parse_workflow(body)

    def problems_in(
        self, registry: Registry, item: Workflow, stored: Row | None
    ) -> list[ErrorDetail]:
        return workflow_problems_in(registry, item)

    def values(self, item: Workflow) -> tuple[Any, ...]:
        return (
            item.name,
            Jsonb(dict(item.raw_trigger)),
            Jsonb(dict(item.context)),
            Jsonb(list(item.raw_steps)),
            item.active,
        )

    def conflict(self, item: Workflow) -> Conflict:
        return Conflict(f"A workflow named {item.name} already exists")

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **_row_body(row),
            "created_at": iso_utc(row["created_at"]),
            "updated_at": iso_utc(row["updated_at"]),
        }

    def saved_json(self, item: Workflow, row: Row) -> Any:
        return replace(item, id=str(row["id"])).to_json()

    # import: a workflow whose name exists is skipped before it is parsed
    def raw_key(self, raw: object) -> Hashable:
        return (self.raw_label(raw),)

    def key_of(self, item: Workflow) -> Hashable:
        return (item.name,)

    def raw_label(self, raw: object) -> str:
        return raw_text(raw, "name")


WORKFLOWS: Final = WorkflowKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (WORKFLOWS,)
