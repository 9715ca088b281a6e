"""The write pipeline: stages, the context they share, and the runner.

A write (create, update, delete) runs in phases; capabilities contribute `Stage`s to each:

    PREPARE        before BEGIN, on the request body (grants, initial states, file ids)
    BEFORE_WRITE   in the transaction, stored row locked, nothing written yet (conditions,
                   rules, transitions, sync hooks); a stage may replace `ctx.plan`
    BEFORE_LINKS   before the join-table rows of a many-to-many write (`ctx.links`)
    AFTER_WRITE    written (with nested children), before COMMIT (checks, outbox rows)
    BEFORE_DELETE  stored row locked, before the delete and its cascades
    AFTER_DELETE   deleted, before COMMIT
    AFTER_COMMIT   committed; never fails the write (a raising stage is logged)

Inside a phase, stages run by `order` (the contract order, pinned by a test against
docs/rules.md). Each stage names the write modes it runs in: `API` (a client's request),
`SYSTEM` (a write rocketd makes itself: workflow actions, state-machine `create_record`) and
`IMPORT` (sample data of a schema import). With `children=True` a stage also runs for every
nested child, with a context of its own whose `entity` is the child's and whose `path` locates it
in the request (`lines[2]`); errors raised there name the child's fields with that path.

`StageBook` compiles the installed stages once per snapshot: for each (entity, mode, child) it
keeps one tuple per phase, filtered by `Stage.applies`, so an entity without rules, hooks or
workflows walks empty tuples. The kernel names no capability: everything here is generic.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from rocketd.db.replicas import ReplicaReads
from rocketd.engine.caller import Caller
from rocketd.engine.changes import Changes, compute_changes
from rocketd.engine.read.scope import NO_READ_HOOKS, ReadHooks
from rocketd.engine.record_state import RecordState
from rocketd.engine.signals import SignalSender
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.write.plan import RelationWrite, WritePlan
from rocketd.errors import ApiError, ErrorDetail
from rocketd.logging import get_logger
from rocketd.metadata.model import Entity
from rocketd.metadata.registry import Registry
from rocketd.tracing import current_span

log = get_logger("rocketd.engine.pipeline")

T = TypeVar("T")

WriteAction = Literal["create", "update", "delete"]


class Phase(enum.Enum):
    PREPARE = "prepare"
    BEFORE_WRITE = "before_write"
    BEFORE_LINKS = "before_links"
    AFTER_WRITE = "after_write"
    BEFORE_DELETE = "before_delete"
    AFTER_DELETE = "after_delete"
    AFTER_COMMIT = "after_commit"


class WriteMode(enum.Flag):
    API = enum.auto()
    SYSTEM = enum.auto()
    IMPORT = enum.auto()


ALL_MODES: Final = WriteMode.API | WriteMode.SYSTEM | WriteMode.IMPORT


def everywhere(snapshot: AppSnapshot, entity: Entity) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One step of the write pipeline. `name` is `<capability>.<step>` (span and log key)."""

    name: str
    phase: Phase
    order: int
    run: Callable[[WriteContext], Awaitable[None]]
    # Whether the stage has anything to do for this entity in this snapshot (evaluated once per
    # snapshot and entity, never per request).
    applies: Callable[[AppSnapshot, Entity], bool] = everywhere
    modes: WriteMode = WriteMode.API
    children: bool = False
    # For a new nested child: the stage writes nothing to the database and reads no row but the
    # child's own, so it may run for every new child of one relation before (BEFORE_WRITE) or
    # after (AFTER_WRITE) a single multi-row INSERT of them all instead of around each INSERT.
    batch_safe: bool = False


@dataclass(frozen=True)
class ServiceKey(Generic[T]):
    """A typed name for a process-wide service a stage may need (like aiohttp's `web.AppKey`)."""

    name: str


@dataclass(frozen=True)
class DomainEvent:
    """Something a write did that later stages (and later capabilities) may react to.

    Stages emit them on `WriteContext.events`; the subclasses are owned by the capability that
    emits them (a state machine's transition, a workflow step) or by the kernel (fields changed).
    """

    entity: str
    record_id: str


@dataclass(frozen=True, eq=False)
class AppContext:
    """One app as one request (or one background job) sees it: the snapshot it started with,
    the pool, the compiled stages, the read hooks and the process services."""

    name: str
    pool: AsyncConnectionPool[Any]
    snapshot: AppSnapshot
    signals: SignalSender
    stages: StageBook
    read_hooks: ReadHooks = NO_READ_HOOKS
    services: Mapping[ServiceKey[Any], Any] = field(default_factory=dict)
    # Streaming replicas for lists and gets (`database.replica_urls`), if any.
    replicas: ReplicaReads | None = None

    @property
    def registry(self) -> Registry:
        return self.snapshot.registry

    def read_connection(self, caller: Caller) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A connection for a list or a get: a replica that has the caller's writes, else the
        primary pool's."""
        if self.replicas is None:
            return self.pool.connection()
        return self.replicas.connection(caller.user_id)

    def service(self, key: ServiceKey[T]) -> T:
        try:
            value: T = self.services[key]
        except KeyError:
            raise LookupError(f"service {key.name} is not installed") from None
        return value


# Loads a row of `entity` by primary key in the write's transaction (FOR UPDATE when asked);
# None when there is none. The kernel's executor provides it to child contexts.
RowLoader = Callable[[AsyncConnection[Any], Entity, Any, bool], Awaitable[Mapping[str, Any] | None]]
RecordReader = Callable[[AsyncConnection[Any], Entity, Any], Awaitable[Mapping[str, Any] | None]]


@dataclass(eq=False)
class WriteContext:
    """One write of one record (the request's, or one nested child's), as the stages see it.

    `stored` is the locked row as PostgreSQL has it (update and delete); `record` the written
    record in its wire form (after the write). For a nested child both are loaded on demand
    (`load_stored`, `load_record`): the kernel reads a child's rows only when a stage asks.
    `events` is shared by the request's contexts; `scratch` is each stage's own per-write memory,
    keyed by an object the stage owns.
    """

    app: AppContext
    caller: Caller
    mode: WriteMode
    entity: Entity
    action: WriteAction
    body: dict[str, Any] | None = None
    plan: WritePlan | None = None
    stored: Mapping[str, Any] | None = None
    record: Mapping[str, Any] | None = None
    conn: AsyncConnection[Any] | None = None
    path: str = ""
    parent: WriteContext | None = None
    pk: Any = None
    links: RelationWrite | None = None
    # BEFORE_LINKS: the condition (qualified with `write.nested.TARGET_ALIAS`) the linked and
    # unlinked target rows must meet; a stage narrows it, None lets every live row through
    link_filter: tuple[Any, Any] | None = None
    events: list[DomainEvent] = field(default_factory=list)
    # work to run once the write's transaction committed (AFTER_COMMIT stages of system writes
    # made inside it); shared by the request's contexts
    deferred: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    scratch: dict[object, Any] = field(default_factory=dict)
    _changes: Changes | None = None
    _load_row: RowLoader | None = None
    _read_record: RecordReader | None = None
    # (the plan it was built for, the state): `write_state`'s memory
    _state: tuple[WritePlan, RecordState] | None = None

    @property
    def snapshot(self) -> AppSnapshot:
        return self.app.snapshot

    @property
    def registry(self) -> Registry:
        return self.app.snapshot.registry

    @property
    def is_child(self) -> bool:
        return self.parent is not None

    def changes(self) -> Changes:
        """What this write changed (computed once, after the write; on delete: the stored row
        as `record`, nothing listed as changed)."""
        found = self._changes
        if found is None:
            record = self.stored if self.action == "delete" else self.record
            if record is None:
                raise RuntimeError(f"{self.entity.name}: changes asked before the write")
            found = self._changes = compute_changes(self.action, record, self.stored)
        return found

    def emit(self, event: DomainEvent) -> None:
        self.events.append(event)

    def connection(self) -> AsyncConnection[Any]:
        if self.conn is None:
            raise RuntimeError(f"{self.entity.name}: no connection outside the transaction")
        return self.conn

    def child(
        self,
        entity: Entity,
        action: WriteAction,
        path: str,
        *,
        pk: Any = None,
        plan: WritePlan | None = None,
        body: dict[str, Any] | None = None,
    ) -> WriteContext:
        return WriteContext(
            app=self.app,
            caller=self.caller,
            mode=self.mode,
            entity=entity,
            action=action,
            body=body,
            plan=plan,
            conn=self.conn,
            path=path,
            parent=self,
            pk=pk,
            events=self.events,
            deferred=self.deferred,
            _load_row=self._load_row,
            _read_record=self._read_record,
        )

    async def load_stored(self) -> Mapping[str, Any] | None:
        """The stored row (locked FOR UPDATE), read once when a child's stage first asks."""
        if self.stored is None and self.pk is not None and self.action != "create":
            if self._load_row is None:
                raise RuntimeError("no row loader for this write")
            self.stored = await self._load_row(self.connection(), self.entity, self.pk, True)
        return self.stored

    async def write_state(self) -> RecordState:
        """The record of this create or update as the BEFORE_WRITE stages judge it: the plan's
        values over the stored row (`RecordState.for_write`). Built once and shared by the
        stages that follow one another: a stage that assigns values hands the plan on with
        `apply_state`, and the next stage gets the same state, with those values in it."""
        plan = self.plan
        if plan is None:
            raise RuntimeError(f"{self.entity.name}: no plan to judge")
        known = self._state
        if known is not None and known[0] is plan:
            return known[1]
        stored = await self.load_stored()
        state = RecordState.for_write(
            self.entity, self.action, plan.values, stored, self.caller.principal
        )
        self._state = (plan, state)
        return state

    def apply_state(self, state: RecordState) -> None:
        """Put what `state` assigned into the plan; `state` stays this write's state."""
        if self.plan is None:
            raise RuntimeError(f"{self.entity.name}: no plan to apply to")
        self.plan = state.apply_to(self.plan)
        self._state = (self.plan, state)

    async def load_record(self) -> Mapping[str, Any] | None:
        """The written record (wire form), read once when a child's stage first asks."""
        if self.record is None and self.pk is not None and self.action != "delete":
            if self._read_record is None:
                raise RuntimeError("no record reader for this write")
            self.record = await self._read_record(self.connection(), self.entity, self.pk)
        return self.record


# ------------------------------------------------------------------------------------ stage book

# A plain context manager entered around the stage's await (an async one would cost two
# coroutines per stage run of every traced write).
# Wraps each stage run of a traced request (instrumentation spans): while nothing is traced,
# `StageBook.run` does not call it at all (one context-variable read per run, not a call per stage).
StageObserver = Callable[[Stage, WriteContext], AbstractContextManager[None]]


@dataclass(frozen=True)
class EntityStages:
    """The stages of one entity in one mode, per phase, in order."""

    prepare: tuple[Stage, ...] = ()
    before_write: tuple[Stage, ...] = ()
    before_links: tuple[Stage, ...] = ()
    after_write: tuple[Stage, ...] = ()
    before_delete: tuple[Stage, ...] = ()
    after_delete: tuple[Stage, ...] = ()
    after_commit: tuple[Stage, ...] = ()

    def of(self, phase: Phase) -> tuple[Stage, ...]:
        stages: tuple[Stage, ...] = getattr(self, phase.value)
        return stages

    @property
    def empty(self) -> bool:
        return not any(self.of(phase) for phase in Phase)


NO_STAGES: Final = EntityStages()


def order_stages(stages: Iterable[Stage]) -> tuple[Stage, ...]:
    """All stages sorted by phase (in `Phase` order), then `order`, then name; a duplicate name
    or two stages with the same phase and order are a `ValueError` (the order must be total)."""
    ranked = sorted(stages, key=lambda s: (list(Phase).index(s.phase), s.order, s.name))
    names: set[str] = set()
    slots: dict[tuple[Phase, int], str] = {}
    for stage in ranked:
        if stage.name in names:
            raise ValueError(f"two stages are named {stage.name}")
        names.add(stage.name)
        taken = slots.get((stage.phase, stage.order))
        if taken is not None:
            raise ValueError(
                f"stages {taken} and {stage.name} share {stage.phase.value} order {stage.order}"
            )
        slots[(stage.phase, stage.order)] = stage.name
    return tuple(ranked)


class StageBook:
    """The installed stages compiled for one snapshot, per (entity, mode, child)."""

    def __init__(
        self,
        snapshot: AppSnapshot,
        stages: Sequence[Stage],
        observer: StageObserver | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.stages = order_stages(stages)
        self.observer = observer
        self._compiled: dict[tuple[str, WriteMode, bool], EntityStages] = {}
        # whether any stage works on nested bodies before planning (else PREPARE skips the walk)
        self.has_child_prepare = any(s.children and s.phase is Phase.PREPARE for s in self.stages)

    def for_entity(self, entity: Entity, mode: WriteMode, *, child: bool = False) -> EntityStages:
        key = (entity.name, mode, child)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(entity, mode, child)
        return found

    def _compile(self, entity: Entity, mode: WriteMode, child: bool) -> EntityStages:
        per_phase: dict[str, list[Stage]] = {phase.value: [] for phase in Phase}
        for stage in self.stages:
            if not (stage.modes & mode) or (child and not stage.children):
                continue
            if not stage.applies(self.snapshot, entity):
                continue
            per_phase[stage.phase.value].append(stage)
        compiled = EntityStages(**{name: tuple(stages) for name, stages in per_phase.items()})
        return NO_STAGES if compiled.empty else compiled

    async def run(self, stages: tuple[Stage, ...], ctx: WriteContext) -> None:
        """Run `stages` in order on `ctx`; a child's errors name its fields with its path."""
        if not stages:
            return
        try:
            observer = self.observer
            if observer is None or current_span() is None:
                for stage in stages:
                    await stage.run(ctx)
            else:
                for stage in stages:
                    with observer(stage, ctx):
                        await stage.run(ctx)
        except ApiError as exc:
            if ctx.path:
                raise located(exc, ctx.path) from exc
            raise

    async def run_after_commit(self, stages: tuple[Stage, ...], ctx: WriteContext) -> None:
        """AFTER_COMMIT stages: the write is committed, so a failure is logged, never raised."""
        for stage in stages:
            try:
                await self.run((stage,), ctx)
            except Exception:
                log.error(
                    "after-commit stage failed",
                    stage=stage.name,
                    entity=ctx.entity.name,
                    exc_info=True,
                )


def located(exc: ApiError, path: str) -> ApiError:
    """`exc` with every detail's field placed under `path` (a nested child's location).

    A detail already under `path` (the planner reports nested paths itself) is kept as it is; an
    error without details (a 403) keeps its message alone, as for a top-level record.
    """
    if not exc.details:
        return exc
    details = [
        detail
        if detail.field == path or detail.field.startswith((path + ".", path + "["))
        else ErrorDetail(
            detail.message,
            f"{path}.{detail.field}" if detail.field else path,
            detail.rule,
        )
        for detail in exc.details
    ]
    clone = type(exc).__new__(type(exc))
    clone.__dict__.update(exc.__dict__)
    clone.details = details
    clone.args = exc.args
    return clone
