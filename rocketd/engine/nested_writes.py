"""Nested relation writes: what `{"items": {"_write_mode": ..., "data": [...]}}` means.

This module owns the semantics of one relation write: reading the envelope, the write modes, the
identity of items, many-to-many links (planned and applied here: they touch only the join table),
and deciding what each one-to-many / one-to-one item becomes against the parent's *current*
children (`child_steps`, pure). Writing the child records themselves (validation, INSERT/UPDATE,
their own nested writes, any depth) is `writes.py`'s job; it drives the recursion and calls in here.

Decisions that differ from upstream (spec data-api.md "Nested writes", upstream-gaps C17):

- a malformed envelope, a `data` that is not an array of objects, or an unknown `_write_mode` is a
  422 naming `{key}`, `{key}.data` or `{key}._write_mode` (upstream: unknown key / falls back to diff);
- an update or `_delete` of a PK that is not a current child of this parent is a 422
  `{key}[{i}]` "not a child of this record" in every mode that would act on it (upstream: ignored,
  or deleted without checking); when the target's PK is client-supplied (not `generated`), an item
  whose PK is not a current child is a new child and is inserted;
- `_delete` is honoured in `replace` mode; in `append` mode an item marked `_delete` is skipped;
- `_delete: true` without a PK is a 422 (there is nothing to delete), and so is an item naming
  the same child PK as an earlier item of the same write;
- many-to-many: an item without a target id is a 422 (upstream skips it: links never create
  targets, so the client must be told); ids are de-duplicated (first occurrence wins; the same id
  both linked and unlinked is a 422); every id, linked or unlinked, must name a live target row
  the caller may read (the contract checks nothing), else 422 `exists` with the same message
  whether the row is missing or hidden by the caller's read policy, so hidden ids cannot be
  probed; `replace` removes only the links to targets the caller may read (links to targets
  hidden from the caller stay); links are inserted with `ON CONFLICT DO NOTHING` in every mode,
  so a concurrent identical link is not an error.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from psycopg import AsyncConnection, sql

from rocketd.engine.sql_compose import (
    build_delete,
    build_insert,
    build_select,
    condition,
    ident,
    live_condition,
    where_clause,
)
from rocketd.engine.values import ValueProblem, coerce_write_value
from rocketd.errors import ErrorDetail, InternalError, ValidationFailed
from rocketd.metadata.model import WRITE_MODES, Entity, Relation

if TYPE_CHECKING:
    from rocketd.engine.writes import WritePlan

MAX_NESTING_DEPTH: Final = 5  # relation levels below the top-level record
MAX_NESTED_ITEMS: Final = 1000  # items in all `data` arrays of one request
WRITE_MODE_KEY: Final = "_write_mode"
DELETE_KEY: Final = "_delete"
DATA_KEY: Final = "data"

ChildAction = Literal["insert", "update", "delete"]
# The caller's read filter on the rows of a link target, its columns qualified with
# TARGET_ALIAS: an SQL condition and its parameters (None: the caller may read every row).
TargetFilter = tuple[sql.Composable, Sequence[Any]]
TARGET_ALIAS: Final = "_t"


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


@dataclass(frozen=True)
class Envelope:
    mode: str
    items: tuple[Mapping[str, Any], ...]


def read_envelope(
    relation: Relation, value: Any, path: str
) -> tuple[Envelope | None, list[ErrorDetail]]:
    """Check the `{"_write_mode"?, "data": [objects]}` shape of a relation key's value."""
    if not isinstance(value, Mapping):
        return None, [
            ErrorDetail(
                f"{path} must be an object with a data array (nested write of {relation.name})",
                path,
                "type",
            )
        ]
    problems: list[ErrorDetail] = []
    for extra in value:
        if extra not in (DATA_KEY, WRITE_MODE_KEY):
            where = f"{path}.{extra}"
            problems.append(ErrorDetail(f"Unknown field or relation: {where}", where, "unknown"))
    mode = value.get(WRITE_MODE_KEY)
    if mode is None:
        mode = relation.write_mode or "diff"
    if not isinstance(mode, str) or mode not in WRITE_MODES:
        where = f"{path}.{WRITE_MODE_KEY}"
        problems.append(
            ErrorDetail(f"{where} must be one of: {', '.join(sorted(WRITE_MODES))}", where, "enum")
        )
    data = value.get(DATA_KEY)
    if not isinstance(data, list):
        where = f"{path}.{DATA_KEY}"
        problems.append(ErrorDetail(f"{where} must be an array of objects", where, "type"))
        return None, problems
    for index, item in enumerate(data):
        if not isinstance(item, Mapping):
            where = f"{path}[{index}]"
            problems.append(ErrorDetail(f"{where} must be an object", where, "type"))
    if problems:
        return None, problems
    return Envelope(mode, tuple(data)), []


def wants_delete(item: Mapping[str, Any]) -> bool:
    """`_delete` counts only when it is the JSON boolean true."""
    return item.get(DELETE_KEY) is True


def identity(entity: Entity, value: Any) -> str:
    """A comparable key for a PK value, whether it came from JSON, a coercion or the database."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if entity.pk.base_type == "uuid" and isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return value
    return str(value)


def coerce_pk(entity: Entity, raw: Any, path: str) -> tuple[Any, ErrorDetail | None]:
    """Coerce an item's PK value with the target's PK field; a problem names `{path}.{pk}`."""
    try:
        return coerce_write_value(entity.pk, raw), None
    except ValueProblem as problem:
        where = f"{path}.{entity.pk.name}"
        return None, ErrorDetail(f"{where} {problem.expectation}", where, problem.rule)


def plan_links(
    target: Entity, envelope: Envelope, path: str
) -> tuple[tuple[LinkWrite, ...], list[ErrorDetail]]:
    """Many-to-many items -> de-duplicated links (pure). The target id of an item is its value
    for the target's PK field, else its `id`; other keys are ignored (targets are never written)."""
    pk_name = target.pk.name
    links: list[LinkWrite] = []
    seen: dict[str, LinkWrite] = {}
    problems: list[ErrorDetail] = []
    for index, item in enumerate(envelope.items):
        where = f"{path}[{index}]"
        raw = item.get(pk_name)
        if raw is None:
            raw = item.get("id")
        if raw is None:
            problems.append(
                ErrorDetail(
                    f"{where} needs the {pk_name} of an existing {target.name} "
                    "(many-to-many writes only link records)",
                    f"{where}.{pk_name}",
                    "required",
                )
            )
            continue
        target_id, problem = coerce_pk(target, raw, where)
        if problem is not None:
            problems.append(problem)
            continue
        link = LinkWrite(index, target_id, wants_delete(item))
        key = identity(target, target_id)
        first = seen.get(key)
        if first is None:
            seen[key] = link
            links.append(link)
        elif first.unlink != link.unlink:
            problems.append(
                ErrorDetail(
                    f"{where} names the same {target.name} as {path}[{first.index}] "
                    "with a different _delete",
                    where,
                    "conflict",
                )
            )
    return tuple(links), problems


def repeated_children(write: RelationWrite) -> list[ErrorDetail]:
    """Items naming a PK an earlier item of the same write already named (pure)."""
    first: dict[str, int] = {}
    problems: list[ErrorDetail] = []
    for child in write.children:
        if child.pk is None:
            continue
        key = identity(write.target, child.pk)
        if key in first:
            where = f"{write.path}[{child.index}]"
            message = f"{where} names the same {write.target.name} as {write.path}[{first[key]}]"
            problems.append(ErrorDetail(message, where, "conflict"))
        else:
            first[key] = child.index
    return problems


def _not_a_child(path: str) -> ErrorDetail:
    return ErrorDetail(f"{path} is not a child of this record", path, "not_child")


def child_steps(write: RelationWrite, current: Sequence[Any]) -> list[ChildStep]:
    """Decide what each item does against the current children (PKs of live child rows).

    Deletions come first (so a replacement may reuse a unique value of a removed child), then
    inserts and updates in item order. Raises 422 listing every item that names a PK it may not
    touch. Pure.
    """
    target = write.target
    current_keys = {identity(target, pk): pk for pk in current}
    client_pks = not target.primary_key.generated
    deletes: list[ChildStep] = []
    writes: list[ChildStep] = []
    kept: set[str] = set()
    problems: list[ErrorDetail] = []
    for child in write.children:
        path = f"{write.path}[{child.index}]"
        if child.pk is None:
            if child.create is not None and not child.delete:
                writes.append(ChildStep("insert", path, plan=child.create))
            continue
        key = identity(target, child.pk)
        is_current = key in current_keys
        if write.mode == "append":
            if is_current or child.delete or not client_pks:
                continue  # spec: items with a PK are skipped in append mode
        elif child.delete:
            if is_current:
                deletes.append(ChildStep("delete", path, pk=current_keys[key]))
                kept.add(key)
            else:
                problems.append(_not_a_child(path))
            continue
        elif is_current:
            writes.append(ChildStep("update", path, pk=current_keys[key], plan=child.update))
            kept.add(key)
            continue
        if not client_pks:
            problems.append(_not_a_child(path))
        elif child.create is None:
            problems.extend(child.create_problems)
        else:
            writes.append(ChildStep("insert", path, plan=child.create))
    if problems:
        raise ValidationFailed(details=problems)
    if write.mode == "replace":
        missing = [
            ChildStep("delete", f"{write.path}", pk=pk)
            for key, pk in current_keys.items()
            if key not in kept
        ]
        deletes = missing + deletes
    return deletes + writes


def _join_keys(relation: Relation) -> tuple[str, str, str]:
    if not (relation.join_table and relation.source_join_key and relation.target_join_key):
        raise InternalError(f"Relation {relation.name} has no join table configuration")
    return relation.join_table, relation.source_join_key, relation.target_join_key


async def current_children(
    conn: AsyncConnection[Any], relation: Relation, target: Entity, parent_pk: Any
) -> list[Any]:
    """PKs of the live target rows whose FK is the parent, locked for the rest of the write."""
    if not relation.target_key:
        raise InternalError(f"Relation {relation.name} has no target_key")
    pk = target.pk.name
    query = build_select(
        target,
        columns=(pk,),
        conditions=[condition(relation.target_key)],
        order=[(pk, False)],
        for_update=True,
    )
    cur = await conn.execute(query, (parent_pk,))
    return [row[0] for row in await cur.fetchall()]


async def _current_links(
    conn: AsyncConnection[Any], relation: Relation, target: Entity, parent_pk: Any
) -> set[str]:
    join_table, source_col, target_col = _join_keys(relation)
    query = (
        sql.SQL("SELECT ")
        + ident(target_col)
        + sql.SQL(" FROM ")
        + ident(join_table)
        + where_clause([condition(source_col)])
    )
    cur = await conn.execute(query, (parent_pk,))
    return {identity(target, row[0]) for row in await cur.fetchall()}


async def _missing_targets(
    conn: AsyncConnection[Any],
    target: Entity,
    ids: Sequence[Any],
    readable: TargetFilter | None,
) -> set[str]:
    """Identities of `ids` that are not live rows of `target` the caller may read (a row hidden
    by `readable` counts as missing)."""
    if not ids:
        return set()
    pk = ident(target.pk.name, TARGET_ALIAS)
    conditions: list[sql.Composable | None] = [
        condition(target.pk.name, "in", qualifier=TARGET_ALIAS),
        live_condition(target, TARGET_ALIAS),
    ]
    params: list[Any] = [list(ids)]
    if readable is not None:
        conditions.append(sql.SQL("(") + readable[0] + sql.SQL(")"))
        params.extend(readable[1])
    query = (
        sql.SQL("SELECT ")
        + pk
        + sql.SQL(" FROM ")
        + ident(target.table)
        + sql.SQL(" AS ")
        + ident(TARGET_ALIAS)
        + where_clause(conditions)
    )
    cur = await conn.execute(query, params)
    found = {identity(target, row[0]) for row in await cur.fetchall()}
    return {identity(target, i) for i in ids} - found


async def _remove_links(
    conn: AsyncConnection[Any],
    relation: Relation,
    target: Entity,
    parent_pk: Any,
    readable: TargetFilter | None,
) -> None:
    """Delete the parent's join rows (`replace`), except those of live targets hidden from the
    caller by `readable`: a caller cannot have meant to remove a link it cannot see."""
    join_table, source_col, target_col = _join_keys(relation)
    if readable is None:
        await conn.execute(build_delete(join_table, [condition(source_col)]), (parent_pk,))
        return
    hidden = [
        ident(target.pk.name, TARGET_ALIAS) + sql.SQL(" = ") + ident(target_col, join_table),
        live_condition(target, TARGET_ALIAS),
        # IS NOT TRUE: a filter that is NULL on a row (a NULL column) does not show it either.
        sql.SQL("(") + readable[0] + sql.SQL(") IS NOT TRUE"),
    ]
    keep_hidden = (
        sql.SQL("NOT EXISTS (SELECT 1 FROM ")
        + ident(target.table)
        + sql.SQL(" AS ")
        + ident(TARGET_ALIAS)
        + where_clause(hidden)
        + sql.SQL(")")
    )
    await conn.execute(
        build_delete(join_table, [condition(source_col), keep_hidden]),
        (parent_pk, *readable[1]),
    )


async def apply_links(
    conn: AsyncConnection[Any],
    write: RelationWrite,
    parent_pk: Any,
    readable: TargetFilter | None = None,
) -> None:
    """Write the join table of a many-to-many relation for one parent (target rows untouched).

    `readable` is the caller's read filter on the target: every id the write names, to link or
    to unlink, must be a live target row it lets through (422 `exists` otherwise, one message
    for missing and hidden rows alike)."""
    join_table, source_col, target_col = _join_keys(write.relation)
    target = write.target

    named = [link.target_id for link in write.links]
    missing = await _missing_targets(conn, target, named, readable)
    if missing:
        raise ValidationFailed(
            details=[
                ErrorDetail(
                    f"{write.path}[{link.index}]: no {target.name} with id {link.target_id}",
                    f"{write.path}[{link.index}]",
                    "exists",
                )
                for link in write.links
                if identity(target, link.target_id) in missing
            ]
        )

    linked: set[str] = set()
    if write.mode == "diff":
        linked = await _current_links(conn, write.relation, target, parent_pk)
    elif write.mode == "replace":
        await _remove_links(conn, write.relation, target, parent_pk, readable)

    to_link = [
        link
        for link in write.links
        if not link.unlink and identity(target, link.target_id) not in linked
    ]
    to_unlink = [link for link in write.links if link.unlink] if write.mode == "diff" else []
    if to_unlink:
        await conn.execute(
            build_delete(join_table, [condition(source_col), condition(target_col, "in")]),
            (parent_pk, [link.target_id for link in to_unlink]),
        )
    if to_link:
        await conn.execute(
            build_insert(
                join_table, (source_col, target_col), rows=len(to_link), on_conflict_do_nothing=True
            ),
            [value for link in to_link for value in (parent_pk, link.target_id)],
        )
