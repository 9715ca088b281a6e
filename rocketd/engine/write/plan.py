"""The plan of a write: validated, coerced values for one record and its nested writes (pure types).

`planner` makes these from a request body; the executor runs them; stages of the pipeline read
them (and may replace `WritePlan`s with ones carrying values they set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rocketd.errors import ErrorDetail
from rocketd.metadata.model import Entity, Relation

Operation = Literal["create", "update"]
ChildAction = Literal["insert", "update", "delete"]


@dataclass(frozen=True)
class SlugRequest:
    """Slug generation left for execution (uniqueness needs the database).

    On update the slug is regenerated only when `source_text` differs from the stored source value.
    """

    field: str
    source: str
    base: str  # slugify(source value)
    source_text: str


@dataclass(frozen=True)
class WritePlan:
    """A validated write of one record: coerced column values, a pending slug, nested writes."""

    entity: Entity
    operation: Operation
    values: Mapping[str, Any]
    slug: SlugRequest | None = None
    relations: tuple[RelationWrite, ...] = ()


@dataclass(frozen=True)
class ChildWrite:
    """One item of a one-to-many / one-to-one write, validated for every way it may be used.

    `pk` is the coerced PK the item names (None: a new child). `update` is the plan used when the
    PK names a current child; `create` the plan used when the item becomes a new child. When the
    item could become a new child only by naming a client-supplied PK, `create` may be None and
    `create_problems` says why it could not be inserted (raised only if that path is taken).
    """

    index: int
    pk: Any = None
    delete: bool = False
    update: WritePlan | None = None
    create: WritePlan | None = None
    create_problems: tuple[ErrorDetail, ...] = ()


@dataclass(frozen=True)
class LinkWrite:
    """One many-to-many item: link (or, with `unlink`, unlink) the target with `target_id`."""

    index: int
    target_id: Any
    unlink: bool = False


@dataclass(frozen=True)
class RelationWrite:
    """A validated write of one relation key of a record (children or links, never both)."""

    key: str  # the body key as the client wrote it (name or alias)
    path: str  # full path of the key from the top-level record, e.g. `items[0].lines`
    relation: Relation
    target: Entity
    mode: str
    children: tuple[ChildWrite, ...] = ()
    links: tuple[LinkWrite, ...] = ()


@dataclass(frozen=True)
class ChildStep:
    """One thing to do to a child row, decided against the current children."""

    action: ChildAction
    path: str
    pk: Any = None
    plan: WritePlan | None = None
