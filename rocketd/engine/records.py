"""The five record operations of the data API, and the one write path every writer takes.

Reads (`list_page`, `get_one`) apply the caller's `ReadScope` (from the installed read hooks) as
an extra WHERE on the list, its count, get-by-id and every include, so a row the caller may not
see is absent (get-by-id: 404, like a missing id).

Writes run the pipeline (`engine/pipeline.py`) around the planner and executor:

    PREPARE stages (before BEGIN, on the body; for nested bodies too when a stage asks)
    -> plan (parse, split, field validation: pure) -> BEGIN
    -> lock the stored row (update/delete; 404) -> BEFORE_WRITE / BEFORE_DELETE stages
    -> parent and nested SQL (each child runs its own entity's child stages around its SQL;
       many-to-many links run BEFORE_LINKS) -> the written record
    -> AFTER_WRITE / AFTER_DELETE stages -> COMMIT -> AFTER_COMMIT stages

API requests use `create`/`update`/`delete` (one transaction each). Writes rocketd makes itself
(workflow actions, state-machine `create_record`, imported sample data) use the `*_in` forms
inside the caller's transaction, in `WriteMode.SYSTEM` or `IMPORT`: the same stages run, minus
the API-only ones. The kernel names no capability; which stages exist is the installation's
business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import AsyncConnection

from rocketd.engine.caller import Caller
from rocketd.engine.pipeline import (
    AppContext,
    EntityStages,
    WriteAction,
    WriteContext,
    WriteMode,
)
from rocketd.engine.read import list_shapes, paging, query
from rocketd.engine.write import transaction, writes
from rocketd.engine.write.deletes import delete_record
from rocketd.engine.write.nested import DATA_KEY, TargetFilter
from rocketd.engine.write.plan import ChildAction, RelationWrite, WritePlan
from rocketd.errors import Forbidden, NotFound, UnknownEntity
from rocketd.expressions import patterns
from rocketd.logging import get_logger
from rocketd.metadata.model import Entity
from rocketd.metadata.registry import Registry
from rocketd.tracing import AnySpan, start_span, traced

log = get_logger("rocketd.engine.records")

AfterCommit = list[Callable[[], Awaitable[None]]]


def require_entity(registry: Registry, name: str) -> Entity:
    entity = registry.entity(name)
    if entity is None:
        raise UnknownEntity(f"Unknown entity: {name}")
    return entity


def _not_found(entity: Entity, raw_id: str) -> NotFound:
    return NotFound(f"{entity.name} with id {raw_id} not found")


# ------------------------------------------------------------------------------------------ reads


@dataclass(frozen=True)
class ListPage:
    """One list answer: the records either as dicts (`records`) or as the wire JSON PostgreSQL
    wrote for each (`encoded`, a page without includes), and the paging meta."""

    meta: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[bytes] | None = None


def _project(records: list[dict[str, Any]], visible: frozenset[str] | None) -> None:
    """Drop the fields the caller does not see (the read hooks' projection), in place."""
    if visible is None:
        return
    for record in records:
        for key in [k for k in record if k not in visible]:
            del record[key]


@traced("engine", "handler", "record.list", entity_arg=2)
async def list_page(
    app: AppContext,
    caller: Caller,
    entity_name: str,
    params: Mapping[str, str],
    *,
    max_per_page: int,
    default_per_page: int,
    cursor_key: bytes = b"",
) -> ListPage:
    """A list page (`read.paging` says how it is paged); `cursor_key` signs its cursors."""
    snapshot = app.snapshot
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    hooks = app.read_hooks
    scope = hooks.scope(snapshot, caller)
    row_filter = scope.row_filter(entity)
    spec = query.parse_list_query_cached(
        registry, entity, params, max_per_page=max_per_page, default_per_page=default_per_page
    )
    where, where_params = row_filter if row_filter is not None else (None, ())
    if spec.includes:
        raw_include = dict(params.items()).get("include")  # the last value, as parsed
        spec = replace(spec, includes=scope.includes(spec.includes, raw_include))
    visible = hooks.visible_fields(snapshot, caller, entity)
    keyset = paging.keyset_of(entity, spec, visible, cursor_key)
    can_cursor = keyset is not None or not spec.count_total
    can_cursor = can_cursor and paging.cursorable(entity, spec, visible)
    filter_values, shape = query.filter_shape(spec.filters)
    list_shapes.record(app.name, entity.name, shape, spec.order, filter_values)
    equal = [f.field.name for f in spec.filters if f.op == "eq"]
    indexed = snapshot.sort_columns(entity.table, equal)
    async with app.read_connection(caller) as conn:
        if not spec.includes and visible is None:
            answer = await query.list_records_json(
                conn,
                entity,
                spec,
                snapshot.table_columns(entity.table),
                extra_where=where,
                extra_params=where_params,
                indexed=indexed,
                keyset=keyset,
            )
            if answer is not None:
                encoded, total = answer
                meta = paging.page_meta(
                    entity,
                    spec,
                    encoded,
                    total,
                    keyset=keyset,
                    can_cursor=can_cursor,
                    key=cursor_key,
                )
                return ListPage(meta, encoded=encoded)
        rows, total = await query.list_records(
            conn,
            registry,
            entity,
            spec,
            extra_where=where,
            extra_params=where_params,
            include_where=scope.include_where(),
            indexed=indexed,
            keyset=keyset,
        )
    meta = paging.page_meta(
        entity, spec, rows, total, keyset=keyset, can_cursor=can_cursor, key=cursor_key
    )
    _project(rows, visible)
    return ListPage(meta, records=rows)


@traced("engine", "handler", "record.get", entity_arg=2, id_arg=3)
async def get_one(
    app: AppContext,
    caller: Caller,
    entity_name: str,
    raw_id: str,
    include: str | None,
) -> dict[str, Any]:
    snapshot = app.snapshot
    registry = snapshot.registry
    entity = require_entity(registry, entity_name)
    scope = app.read_hooks.scope(snapshot, caller)
    row_filter = scope.row_filter(entity)
    includes = scope.includes(query.parse_includes(registry, entity, include, strict=True), include)
    where, where_params = row_filter if row_filter is not None else (None, ())
    async with app.read_connection(caller) as conn:
        record = await query.get_record(
            conn,
            registry,
            entity,
            raw_id,
            includes,
            extra_where=where,
            extra_params=where_params,
            include_where=scope.include_where(),
        )
    _project([record], app.read_hooks.visible_fields(snapshot, caller, entity))
    return record


async def may_read(
    conn: AsyncConnection[Any], app: AppContext, caller: Caller, entity: Entity, pk: Any
) -> bool:
    """Whether `pk` names a live row of `entity` the caller may read, decided as
    `GET /{entity}/{id}` would (the read scope's grant and row filter)."""
    try:
        row_filter = app.read_hooks.scope(app.snapshot, caller).row_filter(entity)
    except Forbidden:
        return False
    where, params = row_filter if row_filter is not None else (None, ())
    row = await query.fetch_record_by_pk(conn, entity, pk, extra_where=where, extra_params=params)
    return row is not None


# ----------------------------------------------------------------------------------------- writes


class _WriteTransaction:
    """`async with _WriteTransaction(app, entity, caller) as conn:` one write transaction; a
    database error anywhere in it becomes the contract's error.

    Every write takes one, plain or not: a plain write as a lone autocommit statement is about
    1.8x faster, but adding a rule, webhook or workflow would then halve an entity's write
    throughput at once (docs/benchmarks.md, "The single-statement path"). The outbox rows and
    workflow instances a write adds are sent with its COMMIT (`transaction`). The regular
    expressions of its stages share one time budget (`patterns.time_budget`), nested records
    included.

    It enters a pool connection, the `nested_write.execute` span, the transaction and the time
    budget, in that order, and leaves them in reverse, each seeing the exception that ends the
    block (a database error already mapped). A class rather than an `@asynccontextmanager`
    holding four nested blocks: every write opens one, and the generator and its nested context
    managers cost about thirty Python calls more per write."""

    __slots__ = ("_app", "_budget", "_caller", "_conn", "_entity", "_lease", "_span", "_tx")

    def __init__(self, app: AppContext, entity: Entity, caller: Caller) -> None:
        self._app = app
        self._entity = entity
        self._caller = caller

    async def __aenter__(self) -> AsyncConnection[Any]:
        lease = self._lease = self._app.pool.connection()
        conn: AsyncConnection[Any] = await lease.__aenter__()
        self._conn = conn
        span = self._span = start_span(
            "engine", "writer", "nested_write.execute", entity=self._entity.name
        )
        span.__enter__()
        tx = self._tx = transaction.WriteTransaction(conn, self._app.signals.signal)
        try:
            await tx.__aenter__()
        except BaseException as exc:
            await self._fail(exc)
            raise
        self._budget = patterns.start_budget()
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        patterns.end_budget(self._budget)
        try:
            await self._tx.__aexit__(kind, exc, tb)  # COMMIT, or ROLLBACK after `exc`
        except BaseException as failed:  # the COMMIT (or its deferred statements) failed
            await self._fail(failed)
            raise
        if exc is not None:
            await self._fail(exc)
            return  # `exc` goes on (`_fail` raised instead when it maps it)
        try:
            if self._app.replicas is not None:  # committed: the caller's next reads wait for it
                await self._app.replicas.note_write(self._caller.user_id, self._conn)
        except BaseException as failed:
            await self._leave(failed)
            raise
        await self._leave(None)

    async def _fail(self, exc: BaseException) -> None:
        """Leave after `exc`; a database error is raised as the contract's error instead."""
        if isinstance(exc, psycopg.Error):
            error = writes.map_database_error(exc, self._entity, "")
            await self._leave(error)
            raise error from exc
        await self._leave(exc)

    async def _leave(self, error: BaseException | None) -> None:
        """End the span and give the connection back, as the block ends with `error`."""
        kind = None if error is None else type(error)
        tb = None if error is None else error.__traceback__
        try:
            self._span.__exit__(kind, error, tb)
        finally:
            await self._lease.__aexit__(kind, error, tb)


def _context(
    app: AppContext,
    caller: Caller,
    mode: WriteMode,
    entity: Entity,
    action: WriteAction,
    body: dict[str, Any] | None = None,
    deferred: AfterCommit | None = None,
) -> WriteContext:
    return WriteContext(
        app=app,
        caller=caller,
        mode=mode,
        entity=entity,
        action=action,
        body=body,
        deferred=[] if deferred is None else deferred,
        _load_row=_load_row,
        _read_record=_read_record,
    )


async def _after_commit(app: AppContext, stages: EntityStages, ctx: WriteContext) -> None:
    """The write committed: its AFTER_COMMIT stages, then the work stages deferred to now
    (business events, system writes' own after-commit stages). Never fails the write."""
    await app.stages.run_after_commit(stages.after_commit, ctx)
    for work in ctx.deferred:
        try:
            await work()
        except Exception:
            log.error("after-commit work failed", entity=ctx.entity.name, exc_info=True)


async def _load_row(
    conn: AsyncConnection[Any], entity: Entity, pk: Any, for_update: bool
) -> Mapping[str, Any] | None:
    return await query.fetch_record_by_pk(conn, entity, pk, for_update=for_update)


async def _read_record(
    conn: AsyncConnection[Any], entity: Entity, pk: Any
) -> Mapping[str, Any] | None:
    row = await query.fetch_record_by_pk(conn, entity, pk)
    return None if row is None else query.encode_record(entity, row)


@traced("engine", "handler", "record.create", entity_arg=2)
async def create(
    app: AppContext,
    caller: Caller,
    entity_name: str,
    body: dict[str, Any],
    *,
    mode: WriteMode = WriteMode.API,
) -> dict[str, Any]:
    entity = require_entity(app.registry, entity_name)
    ctx = _context(app, caller, mode, entity, "create", body)
    stages = app.stages.for_entity(entity, mode)
    await _prepare(ctx, stages)
    prepared = _body(ctx)
    ctx.plan = writes.plan_create(app.registry, entity, prepared)  # validated before BEGIN
    try:
        async with _WriteTransaction(app, entity, caller) as conn:
            ctx.conn = conn
            record = await _write_created(ctx, stages, batch_children=True)
    except writes.BatchFailed:
        # Again from BEGIN, child by child, so that the error names the child (rare: the
        # write fails either way). PREPARE stages ran once; the prepared body is reused.
        ctx = _context(app, caller, mode, entity, "create", prepared)
        ctx.plan = writes.plan_create(app.registry, entity, prepared)
        async with _WriteTransaction(app, entity, caller) as conn:
            ctx.conn = conn
            record = await _write_created(ctx, stages)
    await _after_commit(app, stages, ctx)
    return record


@traced("engine", "handler", "record.update", entity_arg=2, id_arg=3)
async def update(
    app: AppContext,
    caller: Caller,
    entity_name: str,
    raw_id: str,
    body: dict[str, Any],
    *,
    mode: WriteMode = WriteMode.API,
) -> dict[str, Any]:
    entity = require_entity(app.registry, entity_name)
    ctx = _context(app, caller, mode, entity, "update", body)
    stages = app.stages.for_entity(entity, mode)
    await _prepare(ctx, stages)
    prepared = _body(ctx)
    ctx.plan = writes.plan_update(app.registry, entity, prepared)
    try:
        async with _WriteTransaction(app, entity, caller) as conn:
            ctx.conn = conn
            await _lock_stored(ctx, raw_id)
            record = await _write_updated(ctx, stages, batch_children=True)
    except writes.BatchFailed:  # as in `create`
        ctx = _context(app, caller, mode, entity, "update", prepared)
        ctx.plan = writes.plan_update(app.registry, entity, prepared)
        async with _WriteTransaction(app, entity, caller) as conn:
            ctx.conn = conn
            await _lock_stored(ctx, raw_id)
            record = await _write_updated(ctx, stages)
    await _after_commit(app, stages, ctx)
    return record


@traced("engine", "handler", "record.delete", entity_arg=2, id_arg=3)
async def delete(
    app: AppContext,
    caller: Caller,
    entity_name: str,
    raw_id: str,
    *,
    mode: WriteMode = WriteMode.API,
) -> dict[str, Any]:
    entity = require_entity(app.registry, entity_name)
    ctx = _context(app, caller, mode, entity, "delete")
    stages = app.stages.for_entity(entity, mode)
    await app.stages.run(stages.prepare, ctx)
    async with _WriteTransaction(app, entity, caller) as conn:
        ctx.conn = conn
        await _lock_stored(ctx, raw_id)
        await _delete_stored(ctx, stages)
    await _after_commit(app, stages, ctx)
    return {"id": raw_id}


# --- inside the caller's transaction (system writes, imports, bulk) -----------------------------


async def create_in(
    conn: AsyncConnection[Any],
    app: AppContext,
    caller: Caller,
    entity: Entity,
    body: dict[str, Any],
    *,
    mode: WriteMode,
    after_commit: AfterCommit,
) -> dict[str, Any]:
    """A create inside `conn`'s open transaction; its AFTER_COMMIT stages are appended to
    `after_commit` for the transaction's owner to run once it committed."""
    ctx = _context(app, caller, mode, entity, "create", body, after_commit)
    ctx.conn = conn  # PREPARE stages read through the caller's transaction too
    stages = app.stages.for_entity(entity, mode)
    await _prepare(ctx, stages)
    keep_keys = mode is WriteMode.IMPORT  # imported rows keep their ids and timestamps
    ctx.plan = writes.plan_create(app.registry, entity, _body(ctx), keep_keys=keep_keys)
    record = await _write_created(ctx, stages)
    _defer(app, stages, ctx, after_commit)
    return record


async def update_in(
    conn: AsyncConnection[Any],
    app: AppContext,
    caller: Caller,
    entity: Entity,
    raw_id: str,
    body: dict[str, Any],
    *,
    mode: WriteMode,
    after_commit: AfterCommit,
) -> dict[str, Any]:
    """An update inside `conn`'s open transaction (see `create_in`)."""
    ctx = _context(app, caller, mode, entity, "update", body, after_commit)
    ctx.conn = conn  # PREPARE stages read through the caller's transaction too
    stages = app.stages.for_entity(entity, mode)
    await _prepare(ctx, stages)
    ctx.plan = writes.plan_update(app.registry, entity, _body(ctx))
    await _lock_stored(ctx, raw_id)
    record = await _write_updated(ctx, stages)
    _defer(app, stages, ctx, after_commit)
    return record


def _defer(
    app: AppContext, stages: EntityStages, ctx: WriteContext, after_commit: AfterCommit
) -> None:
    if stages.after_commit:
        after_commit.append(lambda: app.stages.run_after_commit(stages.after_commit, ctx))


# --- the steps --------------------------------------------------------------------------------


def _body(ctx: WriteContext) -> dict[str, Any]:
    if ctx.body is None:  # pragma: no cover - creates and updates always carry one
        raise RuntimeError("a write without a body")
    return ctx.body


async def _prepare(ctx: WriteContext, stages: EntityStages) -> None:
    """PREPARE: the request's stages on its body, then each nested body's own child stages."""
    book = ctx.app.stages
    await book.run(stages.prepare, ctx)
    if not book.has_child_prepare or ctx.body is None:
        return
    for entity, item, path, creating in _nested_bodies(ctx.registry, ctx.entity, ctx.body, ""):
        child_stages = book.for_entity(entity, ctx.mode, child=True).prepare
        if not child_stages:
            continue
        child = ctx.child(entity, "create" if creating else "update", path, body=item)
        await book.run(child_stages, child)
        if child.body is not item and child.body is not None:
            item.clear()
            item.update(child.body)


def _nested_bodies(
    registry: Registry, entity: Entity, body: dict[str, Any], path: str
) -> Iterator[tuple[Entity, dict[str, Any], str, bool]]:
    """Each child item of the nested one-to-many / one-to-one writes in `body`, any depth, as
    (its entity, the item, its path, whether it is a new child: no primary key given).
    Malformed envelopes are skipped: the planner reports them."""
    for key, value in body.items():
        if key in entity.field_map or not isinstance(value, dict):
            continue
        ref = registry.resolve(entity.name, key, for_write=True)
        if ref is None or not ref.forward or ref.relation.many_to_many:
            continue
        target = registry.entity(ref.relation.target)
        items = value.get(DATA_KEY)
        if target is None or not isinstance(items, list):
            continue
        where = f"{path}.{key}" if path else key
        for index, item in enumerate(items):
            if isinstance(item, dict):
                item_path = f"{where}[{index}]"
                yield target, item, item_path, item.get(target.pk.name) is None
                yield from _nested_bodies(registry, target, item, item_path)


async def _lock_stored(ctx: WriteContext, raw_id: str) -> None:
    """Lock the addressed row (404 when there is none): the stages see it as `ctx.stored`."""
    stored = await query.fetch_record(
        ctx.connection(), ctx.registry, ctx.entity, raw_id, for_update=True
    )
    if stored is None:
        raise _not_found(ctx.entity, raw_id)
    ctx.stored = stored
    ctx.pk = stored[ctx.entity.primary_key.field]


async def _write_created(
    ctx: WriteContext, stages: EntityStages, *, batch_children: bool = False
) -> dict[str, Any]:
    """`batch_children` only where a `writes.BatchFailed` can be retried: a transaction of the
    write's own (`create`, `update`), never inside a caller's."""
    book = ctx.app.stages
    conn = ctx.connection()
    await book.run(stages.before_write, ctx)
    plan = _plan(ctx)
    effects = writes.NestedEffects()
    row = await writes.execute_create(
        conn,
        ctx.registry,
        plan,
        _children(ctx, plan),
        batch_children=batch_children,
        effects=effects,
    )
    ctx.pk = row[ctx.entity.pk.name]
    record = await writes.written_record(conn, ctx.registry, plan, row, effects)
    ctx.record = record
    await book.run(stages.after_write, ctx)
    return record


async def _write_updated(
    ctx: WriteContext, stages: EntityStages, *, batch_children: bool = False
) -> dict[str, Any]:
    book = ctx.app.stages
    conn = ctx.connection()
    await book.run(stages.before_write, ctx)
    plan = _plan(ctx)
    effects = writes.NestedEffects()
    row = await writes.execute_update(
        conn,
        ctx.registry,
        plan,
        ctx.pk,
        _children(ctx, plan),
        batch_children=batch_children,
        effects=effects,
    )
    stored = ctx.stored if row is None else row
    if stored is None:  # pragma: no cover - `_lock_stored` ran first
        raise RuntimeError("update without a stored row")
    record = await writes.written_record(conn, ctx.registry, plan, stored, effects)
    ctx.record = record
    await book.run(stages.after_write, ctx)
    return record


async def _delete_stored(ctx: WriteContext, stages: EntityStages) -> None:
    book = ctx.app.stages
    stored = ctx.stored
    if stored is None:  # pragma: no cover - `_lock_stored` ran first
        raise RuntimeError("delete without a stored row")
    await book.run(stages.before_delete, ctx)
    await delete_record(ctx.connection(), ctx.registry, ctx.entity, stored)
    await book.run(stages.after_delete, ctx)


def _plan(ctx: WriteContext) -> WritePlan:
    if ctx.plan is None:  # pragma: no cover - planned before BEGIN
        raise RuntimeError("a write without a plan")
    return ctx.plan


def _children(ctx: WriteContext, plan: WritePlan) -> ChildStages | None:
    return ChildStages(ctx) if plan.relations else None


_CHILD_WRITE_ACTIONS: dict[ChildAction, WriteAction] = {
    "insert": "create",
    "update": "update",
    "delete": "delete",
}


class ChildStages:
    """The executor's hooks around each nested child: the child's own entity's stages (those
    marked `children=True`), with a context of their own; BEFORE_LINKS around link writes.

    The executor calls `before_child` and `after_child` in pairs around each child's SQL, with
    the child's own nested writes in between, so the open child contexts form a stack."""

    def __init__(self, parent: WriteContext) -> None:
        self.parent = parent
        self.book = parent.app.stages
        self._open: list[WriteContext | None] = []
        # a `nested_write.child` span per open child, per target entity, closed last-opened
        # first like the contexts (the executor closes a batch of new children in reverse)
        self._spans: dict[str, deque[AnySpan]] = {}

    def _stages(self, entity: Entity) -> EntityStages:
        return self.book.for_entity(entity, self.parent.mode, child=True)

    def batchable(self, target: Entity) -> bool:
        stages = self._stages(target)
        return all(stage.batch_safe for stage in (*stages.before_write, *stages.after_write))

    async def before_child(
        self,
        conn: AsyncConnection[Any],
        action: ChildAction,
        target: Entity,
        pk: Any,
        plan: WritePlan | None,
        path: str,
    ) -> WritePlan | None:
        span = start_span(
            "engine",
            "writer",
            "nested_write.child",
            entity=target.name,
            record_id=pk,
            metadata={"operation": action, "path": path},
        )
        if span.recording:  # not made current: batched children are open side by side
            self._spans.setdefault(target.name, deque()).append(span)
        stages = self._stages(target)
        if stages.empty:
            self._open.append(None)
            return plan
        ctx = self.parent.child(target, _CHILD_WRITE_ACTIONS[action], path, pk=pk, plan=plan)
        ctx.conn = conn
        self._open.append(ctx)
        await self.book.run(
            stages.before_delete if action == "delete" else stages.before_write, ctx
        )
        return ctx.plan

    async def after_child(
        self, conn: AsyncConnection[Any], action: ChildAction, target: Entity, pk: Any
    ) -> None:
        ctx = self._open.pop()
        if ctx is not None:
            ctx.pk = pk
            stages = self._stages(target)
            await self.book.run(
                stages.after_delete if action == "delete" else stages.after_write, ctx
            )
        spans = self._spans.get(target.name)
        if spans:
            span = spans.pop()
            span.set_record(record_id=pk)
            span.end()

    async def before_links(
        self, conn: AsyncConnection[Any], write: RelationWrite
    ) -> TargetFilter | None:
        stages = self._stages(write.target).before_links
        if not stages:
            return None
        ctx = self.parent.child(write.target, "update", write.path)
        ctx.conn = conn
        ctx.links = write
        await self.book.run(stages, ctx)
        return ctx.link_filter
