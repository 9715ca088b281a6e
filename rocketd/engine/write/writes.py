"""The write pipeline's planner and executor for one record and its nested writes, any depth.

Planning (`plan_create`, `plan_update`) is pure: it splits a body into declared fields and relation
writes, validates everything (children exactly like top-level records, upstream-gaps C17) and
returns a tree of frozen `WritePlan`s carrying coerced values, or raises one 422 listing every
problem. Unknown keys (anywhere in the tree) and malformed nested envelopes are reported alone,
before field validation, as the spec's example shows. Execution (`execute_create`,
`execute_update`) runs inside the caller's transaction and validates nothing; database errors are
mapped to API errors naming the field and the nested path (`map_database_error`).

Body keys that exist but are not writable (a generated PK on create, the PK on update, `auto`
fields, `deleted_at` whether declared or engine-managed) are silently ignored, as the spec says;
so is a child's own FK to its parent, which is always the parent's PK. Set a required field to
null or "" on update and you get 422 `required` rather than a NOT NULL error. A required field
with a `default` may be left out on create (the default is written); sending null or "" for it
is still 422 `required`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

import psycopg
from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors

from rocketd.db.cursors import fetch_rows
from rocketd.engine.read import query
from rocketd.engine.sql.compose import (
    build_insert,
    build_select,
    build_update,
    condition,
    entity_sql,
    live_condition,
)
from rocketd.engine.write import nested
from rocketd.engine.write.deletes import delete_record
from rocketd.engine.write.plan import (
    ChildAction,
    ChildStep,
    ChildWrite,
    Operation,
    RelationWrite,
    SlugRequest,
    WritePlan,
)
from rocketd.engine.write.slugs import slugify, store_with_unique_slug
from rocketd.errors import (
    ApiError,
    Conflict,
    ErrorDetail,
    InternalError,
    InvalidPayload,
    NotFound,
    ValidationFailed,
)
from rocketd.metadata.field_types import ValueProblem, coerce_write_value, value_text
from rocketd.metadata.model import DELETED_AT, Entity, Field, Relation
from rocketd.metadata.registry import Registry
from rocketd.tracing import traced

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_KEY_IN_DETAIL: Final = re.compile(r"Key \(([^)]*)\)=")


# ---------------------------------------------------------------------------------------------
# Planning (pure)


def plan_create(
    registry: Registry, entity: Entity, body: Mapping[str, Any], *, keep_keys: bool = False
) -> WritePlan:
    """Validate a create body; 422 VALIDATION_FAILED with every problem, or the plan.

    `keep_keys` (imported sample data): a generated primary key and `auto` timestamps given in
    the body are written as given instead of ignored, so imported rows keep their ids (and the
    rows that refer to them stay right)."""
    return _plan(registry, entity, body, "create", keep_keys=keep_keys)


def plan_update(registry: Registry, entity: Entity, body: Mapping[str, Any]) -> WritePlan:
    """Validate a partial update body; 422 VALIDATION_FAILED with every problem, or the plan."""
    return _plan(registry, entity, body, "update")


@traced("engine", "writer", "nested_write.plan", entity_arg=1)
def _plan(
    registry: Registry,
    entity: Entity,
    body: Mapping[str, Any],
    operation: Operation,
    *,
    keep_keys: bool = False,
) -> WritePlan:
    if not isinstance(body, Mapping):
        raise InvalidPayload("Request body must be a JSON object")
    planner = _Planner(registry, keep_keys=keep_keys)
    plan = planner.record(entity, body, operation, path="", depth=0)
    if planner.structure:
        raise ValidationFailed(details=planner.structure)
    if planner.problems:
        raise ValidationFailed(details=planner.problems)
    return plan


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _default_of(field: Field) -> Any:
    try:
        return coerce_write_value(field, field.default)
    except ValueProblem:
        return field.default  # metadata validation owns defaults; let PostgreSQL judge it


def plan_fields(
    entity: Entity,
    fields: Mapping[str, Any],
    operation: Operation,
    path: str = "",
    propagated: str | None = None,
    *,
    keep_keys: bool = False,
) -> tuple[dict[str, Any], SlugRequest | None, list[ErrorDetail]]:
    """Validate the declared-field part of a body: required, enum, type, all problems at once.

    Returns the coerced values to write (on create: with defaults for absent fields), the slug to
    generate, and the problems. `propagated` is a child's FK to its parent: never taken from the
    body, never required. Pure.
    """
    creating = operation == "create"
    writable = set(entity.writable_on_create if creating else entity.writable_on_update)
    if creating and keep_keys:
        writable.update(f.name for f in entity.fields if f.name in fields)
    writable.discard(DELETED_AT)
    if propagated:
        writable.discard(propagated)
    slug_config = entity.slug
    derived_slug = slug_config.field if slug_config and slug_config.source else None

    values: dict[str, Any] = {}
    problems: list[ErrorDetail] = []
    # the fields a record is addressed by in a path (`/{entity}/{id}`: its key or its slug)
    addresses = {entity.pk.name, *((slug_config.field,) if slug_config else ())}
    for field in entity.fields:
        if field.name not in writable:
            continue
        where = _join(path, field.name)
        present = field.name in fields
        value = fields.get(field.name)
        derived_here = creating and field.name == derived_slug
        # An absent required field with a default is satisfied by it (the row is the one the
        # client would get by sending the default); an explicit null or "" is still missing.
        defaulted = creating and not present and field.has_default
        missing = present or (creating and not defaulted)
        if field.is_required and _blank(value) and missing and not derived_here:
            problems.append(ErrorDetail(f"{where} is required", where, "required"))
            continue
        if not present:
            if creating and field.has_default:
                values[field.name] = _default_of(field)
            continue
        if value is None:
            values[field.name] = None
            continue
        if derived_here and value == "":
            continue
        if field.enum and value_text(value) not in field.enum:
            message = f"{where} must be one of: {', '.join(field.enum)}"
            problems.append(ErrorDetail(message, where, "enum"))
            continue
        try:
            coerced = coerce_write_value(field, value)
        except ValueProblem as problem:
            problems.append(ErrorDetail(f"{where} {problem.expectation}", where, problem.rule))
            continue
        if field.name in addresses and isinstance(coerced, str) and coerced.startswith("_"):
            # `/{entity}/_...` belongs to the entity's sub-routes: no record may be named so
            message = f"{where} may not start with _ (paths starting with _ are reserved)"
            problems.append(ErrorDetail(message, where, "reserved"))
            continue
        values[field.name] = coerced

    slug: SlugRequest | None = None
    if slug_config is not None and slug_config.source and derived_slug is not None:
        if _blank(fields.get(derived_slug)):
            source_value = fields.get(slug_config.source)
            text = "" if _blank(source_value) else value_text(source_value)
            base = slugify(text) if text else ""
            wanted = creating or (slug_config.regenerate_on_update and slug_config.source in fields)
            if wanted and base:
                slug = SlugRequest(derived_slug, slug_config.source, base, text)
                values.pop(derived_slug, None)
            elif creating and entity.field_map[derived_slug].is_required:
                where = _join(path, derived_slug)
                source = _join(path, slug_config.source)
                message = f"{where} is required (give it, or a {source} to derive it from)"
                problems.append(ErrorDetail(message, where, "required"))
    return values, slug, problems


class _Planner:
    """One planning pass: collects problems over the whole tree and counts nested items."""

    def __init__(self, registry: Registry, *, keep_keys: bool = False) -> None:
        self.registry = registry
        self.keep_keys = keep_keys
        self.structure: list[ErrorDetail] = []  # unknown keys, bad envelopes, depth
        self.problems: list[ErrorDetail] = []  # field validation
        self.items = 0

    def record(
        self,
        entity: Entity,
        body: Mapping[str, Any],
        operation: Operation,
        *,
        path: str,
        depth: int,
    ) -> WritePlan:
        fields, relation_keys = self._split(entity, body, path, child=False)
        values, slug, problems = plan_fields(
            entity, fields, operation, path, keep_keys=self.keep_keys
        )
        self.problems.extend(problems)
        relations = self._relations(entity, relation_keys, path, depth)
        return WritePlan(entity, operation, MappingProxyType(values), slug, relations)

    def _split(
        self, entity: Entity, body: Mapping[str, Any], path: str, *, child: bool
    ) -> tuple[dict[str, Any], list[tuple[str, Relation, Any]]]:
        fields: dict[str, Any] = {}
        relations: list[tuple[str, Relation, Any]] = []
        for key, value in body.items():
            if key in entity.field_map:
                fields[key] = value
                continue
            if key == DELETED_AT and entity.soft_delete:
                continue  # the engine-managed column, echoed in records: ignored like other auto columns
            if child and key == nested.DELETE_KEY:
                continue
            ref = self.registry.resolve(entity.name, key, for_write=True)
            if ref is not None and ref.forward:
                relations.append((key, ref.relation, value))
                continue
            where = _join(path, key)
            self.structure.append(
                ErrorDetail(f"Unknown field or relation: {where}", where, "unknown")
            )
        return fields, relations

    def _relations(
        self,
        entity: Entity,
        relation_keys: list[tuple[str, Relation, Any]],
        path: str,
        depth: int,
    ) -> tuple[RelationWrite, ...]:
        writes: list[RelationWrite] = []
        for key, relation, value in relation_keys:
            where = _join(path, key)
            if depth + 1 > nested.MAX_NESTING_DEPTH:
                message = (
                    f"{where}: nested writes go at most {nested.MAX_NESTING_DEPTH} levels deep"
                )
                self.structure.append(ErrorDetail(message, where, "depth"))
                continue
            envelope, problems = nested.read_envelope(relation, value, where)
            if envelope is None:
                self.structure.extend(problems)
                continue
            self._count(len(envelope.items), where)
            target = self.registry.entity(relation.target)
            if target is None:
                raise InternalError(
                    f"Relation {relation.name} targets unknown entity {relation.target}"
                )
            if relation.many_to_many:
                links, problems = nested.plan_links(target, envelope, where)
                self.problems.extend(problems)
                writes.append(
                    RelationWrite(key, where, relation, target, envelope.mode, links=links)
                )
                continue
            if not relation.target_key:
                raise InternalError(f"Relation {relation.name} has no target_key")
            children = tuple(
                self._child(
                    target, relation.target_key, envelope.mode, index, item, where, depth + 1
                )
                for index, item in enumerate(envelope.items)
            )
            write = RelationWrite(key, where, relation, target, envelope.mode, children=children)
            self.problems.extend(nested.repeated_children(write))
            writes.append(write)
        return tuple(writes)

    def _count(self, items: int, where: str) -> None:
        self.items += items
        if self.items > nested.MAX_NESTED_ITEMS:
            message = f"A request may carry at most {nested.MAX_NESTED_ITEMS} nested items"
            raise ValidationFailed(details=[ErrorDetail(message, where, "limit")])

    def _child(
        self,
        target: Entity,
        fk: str,
        mode: str,
        index: int,
        item: Mapping[str, Any],
        relation_path: str,
        depth: int,
    ) -> ChildWrite:
        path = f"{relation_path}[{index}]"
        pk_name = target.pk.name
        raw_pk = item.get(pk_name)
        pk: Any = None
        if raw_pk is not None:
            pk, problem = nested.coerce_pk(target, raw_pk, path)
            if problem is not None:
                self.problems.append(problem)
                return ChildWrite(index)
        if nested.wants_delete(item):
            if pk is None and mode != "append":
                message = f"{path} has _delete but no {pk_name} of the child to delete"
                self.problems.append(ErrorDetail(message, _join(path, pk_name), "required"))
            return ChildWrite(index, pk, delete=True)
        if pk is not None and mode == "append" and target.primary_key.generated:
            return ChildWrite(index, pk)  # skipped at execution; nothing to validate

        fields, relation_keys = self._split(target, item, path, child=True)
        relations = self._relations(target, relation_keys, path, depth)
        if pk is None:
            values, slug, problems = plan_fields(target, fields, "create", path, fk)
            self.problems.extend(problems)
            create = WritePlan(target, "create", MappingProxyType(values), slug, relations)
            return ChildWrite(index, create=create)

        update: WritePlan | None = None
        if mode != "append":
            values, slug, problems = plan_fields(target, fields, "update", path, fk)
            self.problems.extend(problems)
            update = WritePlan(target, "update", MappingProxyType(values), slug, relations)
        create_plan: WritePlan | None = None
        create_problems: tuple[ErrorDetail, ...] = ()
        if not target.primary_key.generated:
            # A client-supplied PK that is not a current child makes a new child: keep a create
            # plan, or the reasons it cannot be one, until execution knows which it is.
            values, slug, problems = plan_fields(target, fields, "create", path, fk)
            if problems:
                create_problems = tuple(problems)
            else:
                create_plan = WritePlan(target, "create", MappingProxyType(values), slug, relations)
        return ChildWrite(index, pk, False, update, create_plan, create_problems)


# ---------------------------------------------------------------------------------------------
# Execution (inside the caller's transaction)


class ChildHooks(Protocol):
    """Hooks around every nested child write (the pipeline's child stages). `before_child` runs
    before the child's SQL and may return a new plan for it (None for deletes); `after_child`
    after it and after the child's own nested writes; either may raise to refuse the child,
    rolling the caller's transaction back. `pk` is the child's key (None before an insert)."""

    async def before_child(
        self,
        conn: AsyncConnection[Any],
        action: ChildAction,
        target: Entity,
        pk: Any,
        plan: WritePlan | None,
        path: str,
    ) -> WritePlan | None: ...

    async def after_child(
        self, conn: AsyncConnection[Any], action: ChildAction, target: Entity, pk: Any
    ) -> None: ...

    async def before_links(
        self, conn: AsyncConnection[Any], write: RelationWrite
    ) -> nested.TargetFilter | None:
        """Before a many-to-many write: may refuse it (raise), and returns the condition the
        linked and unlinked target rows must meet (qualified with `nested.TARGET_ALIAS`; the
        caller's read filter), or None for every live row."""
        ...

    def batchable(self, target: Entity) -> bool:
        """True when, for new children of `target`, `before_child` may run for all of them
        before one multi-row INSERT and `after_child` for all after it, and neither changes
        the parent row (every stage involved is `batch_safe`)."""
        ...


class BatchFailed(Exception):
    """A multi-row INSERT of nested children failed. Which child caused it cannot be told from
    one statement, and the transaction is aborted: the caller rolls back and runs the write
    again with `batch_children=False`, which names the child exactly (this only costs time on a
    write that fails anyway)."""


@dataclass
class NestedEffects:
    """What a write's nested part did, for the caller: `parent_untouched` stays True when it only
    inserted children, with batchable hooks at most, so the row its own INSERT/UPDATE returned
    is still the row as the write left it (no re-read needed)."""

    parent_untouched: bool = True


async def execute_create(
    conn: AsyncConnection[Any],
    registry: Registry,
    plan: WritePlan,
    hooks: ChildHooks | None = None,
    *,
    batch_children: bool = False,
    effects: NestedEffects | None = None,
) -> dict[str, Any]:
    """INSERT the record and its nested writes; return the row as the INSERT stored it (column ->
    DB value). Nested writes run after that INSERT: a caller that needs the row as the whole
    write left it re-reads when `plan.relations` is not empty (`written_record`).

    `batch_children`: new children of one relation that no hook watches go in one multi-row
    INSERT; a database error there raises `BatchFailed` (see there). `effects` receives what
    the nested part did."""
    executor = _Executor(conn, registry, hooks, batch_children=batch_children, effects=effects)
    return await executor.insert(plan, "", _EMPTY)


async def execute_update(
    conn: AsyncConnection[Any],
    registry: Registry,
    plan: WritePlan,
    pk: Any,
    hooks: ChildHooks | None = None,
    *,
    batch_children: bool = False,
    effects: NestedEffects | None = None,
) -> dict[str, Any] | None:
    """UPDATE the record `pk` (already locked by the caller) and run its nested writes; return the
    row as the UPDATE left it, or None when there was nothing to set (no UPDATE ran).
    `batch_children` and `effects` as for `execute_create`."""
    executor = _Executor(conn, registry, hooks, batch_children=batch_children, effects=effects)
    return await executor.update(plan, pk, "")


async def written_record(
    conn: AsyncConnection[Any],
    registry: Registry,
    plan: WritePlan,
    row: Mapping[str, Any],
    effects: NestedEffects | None = None,
) -> dict[str, Any]:
    """The record a write of `plan` produced: `row` (what its INSERT or UPDATE returned, or the
    stored row when no UPDATE ran) encoded, or a re-read when nested writes ran after it and
    may have changed it (`effects`: unless they only inserted children without hooks)."""
    entity = plan.entity
    if plan.relations and (effects is None or not effects.parent_untouched):
        return await query.get_record_by_pk(conn, registry, entity, row[entity.pk.name])
    return query.encode_record(entity, row)


def _not_found(entity: Entity, pk: Any) -> NotFound:
    return NotFound(f"{entity.name} with id {pk} not found")


class _Executor:
    def __init__(
        self,
        conn: AsyncConnection[Any],
        registry: Registry,
        hooks: ChildHooks | None = None,
        *,
        batch_children: bool = False,
        effects: NestedEffects | None = None,
    ) -> None:
        self.conn = conn
        self.registry = registry
        self.hooks = hooks
        self.batch_children = batch_children
        self.effects = NestedEffects() if effects is None else effects

    async def insert(self, plan: WritePlan, path: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        entity = plan.entity
        values = {**plan.values, **extra}
        slug = plan.slug
        try:
            if slug is None:
                row = await self._insert_row(entity, values)
            else:
                row = await store_with_unique_slug(
                    self.conn,
                    slug.base,
                    lambda candidate: self._insert_row(entity, {**values, slug.field: candidate}),
                    is_slug_collision=lambda exc: violated_column(exc, entity) == slug.field,
                    field=_join(path, slug.field),
                )
        except psycopg.Error as exc:
            raise map_database_error(exc, entity, path) from exc
        await self._relations(plan, row[entity.pk.name], new_parent=True)
        return row

    async def update(self, plan: WritePlan, pk: Any, path: str) -> dict[str, Any] | None:
        entity = plan.entity
        slug = plan.slug
        try:
            if slug is not None and await self._source_changed(entity, slug, pk):
                row = await store_with_unique_slug(
                    self.conn,
                    slug.base,
                    lambda candidate: self._update_row(
                        entity, {**plan.values, slug.field: candidate}, pk
                    ),
                    is_slug_collision=lambda exc: violated_column(exc, entity) == slug.field,
                    field=_join(path, slug.field),
                )
            else:
                row = await self._update_row(entity, plan.values, pk)
        except psycopg.Error as exc:
            raise map_database_error(exc, entity, path) from exc
        await self._relations(plan, pk, new_parent=False)
        return row

    async def _insert_row(self, entity: Entity, values: Mapping[str, Any]) -> dict[str, Any]:
        columns = tuple(values)
        es = entity_sql(entity)

        def build() -> sql.Composed:  # once per entity and column set (the statement cache)
            autos = tuple(f.name for f in entity.fields if f.auto and f.name not in values)
            return build_insert(
                entity.table, columns, now_columns=autos, returning=es.output_columns
            )

        query = es.statements.render(("writes.insert", columns), self.conn, build)
        found = await fetch_rows(self.conn, query, tuple(values.values()))
        if not found:  # pragma: no cover - INSERT ... RETURNING always yields the row
            raise InternalError(f"INSERT into {entity.table} returned nothing")
        return dict(zip(es.output_columns, found[0], strict=True))

    async def _update_row(
        self, entity: Entity, values: Mapping[str, Any], pk: Any
    ) -> dict[str, Any] | None:
        columns = tuple(values)
        if not columns and not any(f.auto == "update" for f in entity.fields):
            return None  # nothing to set (spec: the UPDATE is skipped)
        es = entity_sql(entity)

        def build() -> sql.Composed:  # once per entity and column set (the statement cache)
            autos = tuple(
                f.name for f in entity.fields if f.auto == "update" and f.name not in values
            )
            live = live_condition(entity)
            return build_update(
                entity.table,
                columns,
                now_columns=autos,
                conditions=[condition(entity.pk.name), *([] if live is None else [live])],
                returning=es.output_columns,
            )

        query = es.statements.render(("writes.update", columns), self.conn, build)
        found = await fetch_rows(self.conn, query, (*values.values(), pk))
        if not found:
            raise _not_found(entity, pk)
        return dict(zip(es.output_columns, found[0], strict=True))

    async def _source_changed(self, entity: Entity, slug: SlugRequest, pk: Any) -> bool:
        query = build_select(entity, columns=(slug.source,), conditions=[condition(entity.pk.name)])
        cur = await self.conn.execute(query, (pk,))
        row = await cur.fetchone()
        if row is None:
            raise _not_found(entity, pk)
        stored = row[0]
        return stored is None or value_text(stored) != slug.source_text

    async def _relations(self, plan: WritePlan, parent_pk: Any, *, new_parent: bool) -> None:
        for write in plan.relations:
            if write.relation.many_to_many:
                self.effects.parent_untouched = False
                readable = (
                    None if self.hooks is None else await self.hooks.before_links(self.conn, write)
                )
                try:
                    await nested.apply_links(self.conn, write, parent_pk, readable)
                except psycopg.Error as exc:
                    raise map_database_error(exc, write.target, write.path) from exc
            else:
                await self._children(write, parent_pk, new_parent=new_parent)

    async def _children(self, write: RelationWrite, parent_pk: Any, *, new_parent: bool) -> None:
        fk = write.relation.target_key
        if not fk:
            raise InternalError(f"Relation {write.relation.name} has no target_key")
        current: list[Any] = []
        if not new_parent:
            current = await nested.current_children(
                self.conn, write.relation, write.target, parent_pk
            )
        hooks = self.hooks
        steps = nested.child_steps(write, current)
        batchable = hooks is None or hooks.batchable(write.target)
        if not batchable or any(step.action != "insert" for step in steps):
            self.effects.parent_untouched = False
        elif self.batch_children and self._batchable_steps(steps):
            await self._insert_new_children(write, steps, {fk: parent_pk})
            return
        for step in steps:
            plan = step.plan
            if hooks is not None:
                plan = await hooks.before_child(
                    self.conn, step.action, write.target, step.pk, plan, step.path
                )
            if step.action == "delete":
                await self._delete_child(write.target, step.pk, step.path)
                pk = step.pk
            elif plan is None:  # pragma: no cover - child_steps always attaches a plan
                raise InternalError(f"No plan for {step.path}")
            elif step.action == "insert":
                pk = (await self.insert(plan, step.path, {fk: parent_pk}))[write.target.pk.name]
            else:
                pk = step.pk
                await self.update(plan, pk, step.path)
            if hooks is not None:
                await hooks.after_child(self.conn, step.action, write.target, pk)

    @staticmethod
    def _batchable_steps(steps: list[ChildStep]) -> bool:
        """Two or more new children, none with a slug to find or nested writes of its own."""
        return len(steps) >= 2 and all(
            step.action == "insert"
            and step.plan is not None
            and step.plan.slug is None
            and not step.plan.relations
            for step in steps
        )

    async def _insert_new_children(
        self, write: RelationWrite, steps: list[ChildStep], extra: Mapping[str, Any]
    ) -> None:
        """New children of one parent: every `before_child`, one multi-row INSERT (one INSERT
        per child if the hooks changed the plans' shapes), then every `after_child`."""
        target = write.target
        hooks = self.hooks
        plans: list[WritePlan] = []
        for step in steps:
            plan = step.plan
            if hooks is not None:
                plan = await hooks.before_child(self.conn, "insert", target, None, plan, step.path)
            if plan is None:  # pragma: no cover - child_steps always attaches a plan
                raise InternalError(f"No plan for {step.path}")
            plans.append(plan)
        columns = tuple(plans[0].values)
        if all(tuple(p.values) == columns and p.slug is None and not p.relations for p in plans):
            pks = await self._insert_rows(target, plans, extra)
        else:
            pks = [
                (await self.insert(plan, step.path, extra))[target.pk.name]
                for plan, step in zip(plans, steps, strict=True)
            ]
        if hooks is not None:
            # The hooks keep open children as a stack (a child's own nested writes open and
            # close inside it): close the batch last-opened first, each with its own key.
            for pk in reversed(pks):
                await hooks.after_child(self.conn, "insert", target, pk)

    async def _insert_rows(
        self, entity: Entity, plans: list[WritePlan], extra: Mapping[str, Any]
    ) -> list[Any]:
        """Rows of the same columns in one INSERT; their primary keys, in the plans' order (an
        INSERT ... VALUES returns its rows in the order of the VALUES list)."""
        columns = (*plans[0].values, *extra)
        autos = tuple(f.name for f in entity.fields if f.auto and f.name not in columns)
        pk_name = entity.pk.name
        query = entity_sql(entity).statements.render(
            ("writes.insert_rows", columns, len(plans)),
            self.conn,
            lambda: build_insert(
                entity.table, columns, now_columns=autos, rows=len(plans), returning=(pk_name,)
            ),
        )
        params = [value for plan in plans for value in (*plan.values.values(), *extra.values())]
        try:
            found = await fetch_rows(self.conn, query, params)
        except psycopg.Error as exc:
            raise BatchFailed(f"multi-row INSERT into {entity.table} failed") from exc
        return [row[0] for row in found]

    async def _delete_child(self, target: Entity, pk: Any, path: str) -> None:
        try:
            await delete_record(self.conn, self.registry, target, {target.pk.name: pk})
        except Conflict as exc:
            raise Conflict(exc.message, [ErrorDetail(exc.message, path, "restrict")]) from exc
        except psycopg.Error as exc:
            raise map_database_error(exc, target, path) from exc


# ---------------------------------------------------------------------------------------------
# Database errors -> API errors


def violated_column(exc: psycopg.Error, entity: Entity) -> str | None:
    """The column a constraint violation is about, when it can be told.

    From the error's column, else the constraint name (`idx_{table}_{field}` for unique fields,
    `{table}_pkey`), else PostgreSQL's detail (`Key (email)=(a@b.c) already exists.`).
    """
    diag = exc.diag
    if diag.column_name:
        return diag.column_name
    constraint = diag.constraint_name or ""
    if constraint == f"{entity.table}_pkey":
        return entity.pk.name
    prefix = f"idx_{entity.table}_"
    if constraint.startswith(prefix) and constraint[len(prefix) :] in entity.field_map:
        return constraint[len(prefix) :]
    match = _KEY_IN_DETAIL.match(diag.message_detail or "")
    if match:
        columns = [c.strip() for c in match.group(1).split(",")]
        if len(columns) == 1:
            return columns[0]
    return None


def map_database_error(exc: psycopg.Error, entity: Entity, path_prefix: str = "") -> ApiError:
    """A PostgreSQL error of a write of `entity` as the API error to answer with.

    Unique violation -> 409 CONFLICT (detail rule `unique`); NOT NULL -> 422 `required`; check
    constraints and bad values (out of range, invalid text for the type) -> 422 `type`; foreign
    keys -> 422 `exists` (writing) or 409 (still referenced). Anything else -> 500 INTERNAL_ERROR
    (raise it `from exc` so the log keeps the cause). Detail fields are `{path_prefix}.{column}`.
    """
    column = violated_column(exc, entity)
    where = _join(path_prefix, column) if column else path_prefix
    subject = where or entity.name
    if isinstance(exc, pg_errors.UniqueViolation):
        message = f"{subject} must be unique: another {entity.name} record has this value"
        return Conflict(
            "A record with this value already exists", [ErrorDetail(message, where, "unique")]
        )
    if isinstance(exc, pg_errors.NotNullViolation):
        return ValidationFailed(details=[ErrorDetail(f"{subject} is required", where, "required")])
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        if "still referenced" in (exc.diag.message_detail or ""):
            return Conflict(f"Other records still reference this {entity.name}")
        message = f"{subject} refers to a record that does not exist"
        return ValidationFailed(details=[ErrorDetail(message, where, "exists")])
    if isinstance(exc, pg_errors.CheckViolation | psycopg.DataError):
        reason = exc.diag.message_primary or "invalid value"
        return ValidationFailed(details=[ErrorDetail(f"{subject}: {reason}", where, "type")])
    return InternalError()
