"""What a caller may read, and how reads may be shaped: the kernel's read hooks.

The read path (lists, counts, get by id, includes) asks one `ReadScope` per request which rows of
an entity the caller may see. The kernel itself allows everything (`READ_EVERYTHING`); the
permissions capability plugs its policies in through `ReadHooks.row_scope`. `projection` says
which fields a caller sees (the identity today: every field; field-level permissions will narrow
it) and `cache` may answer a read without running it. Each slot takes one implementation: two
installed capabilities that both fill a slot are a start-up error, not a silent override.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rocketd.engine.caller import Caller
from rocketd.engine.read.query import IncludeSpec
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.sql.compose import IncludeWhere, RowFilter
from rocketd.metadata.model import Entity


class ReadScope(Protocol):
    """One caller's view of one snapshot."""

    def row_filter(self, entity: Entity, qualifier: str | None = None) -> RowFilter | None:
        """The condition on `entity`'s rows the caller may read (None: all of them); raises
        `Forbidden` when the caller may not read `entity` at all."""
        ...

    def includes(self, specs: Sequence[IncludeSpec], raw: str | None) -> tuple[IncludeSpec, ...]:
        """The includes the caller may read: a requested one it may not read is a 403, an eager
        one (not named in `raw`) is left out."""
        ...

    def include_where(self) -> IncludeWhere | None:
        """The row filter of each included entity (None: no filter on any)."""
        ...


class _ReadEverything:
    def row_filter(self, entity: Entity, qualifier: str | None = None) -> RowFilter | None:
        return None

    def includes(self, specs: Sequence[IncludeSpec], raw: str | None) -> tuple[IncludeSpec, ...]:
        return tuple(specs)

    def include_where(self) -> IncludeWhere | None:
        return None


READ_EVERYTHING: ReadScope = _ReadEverything()

RowScope = Callable[[AppSnapshot, Caller], ReadScope]
# The names of the fields of `entity` the caller sees, or None for all of them.
Projection = Callable[[AppSnapshot, Caller, Entity], frozenset[str] | None]


class ReadCache(Protocol):
    """Answers a read from a cache, or computes and keeps it. The cache owns its keys (which must
    cover everything that shapes the answer: the caller's scope, the parameters, the snapshot)
    and its invalidation."""

    async def read(
        self,
        snapshot: AppSnapshot,
        caller: Caller,
        entity: Entity,
        key: Hashable,
        compute: Callable[[], Awaitable[Any]],
    ) -> Any: ...


@dataclass(frozen=True)
class ReadHooks:
    row_scope: RowScope | None = None
    projection: Projection | None = None
    cache: ReadCache | None = None

    def scope(self, snapshot: AppSnapshot, caller: Caller) -> ReadScope:
        return READ_EVERYTHING if self.row_scope is None else self.row_scope(snapshot, caller)

    def visible_fields(
        self, snapshot: AppSnapshot, caller: Caller, entity: Entity
    ) -> frozenset[str] | None:
        return None if self.projection is None else self.projection(snapshot, caller, entity)

    @classmethod
    def combine(cls, named: Iterable[tuple[str, ReadHooks]]) -> ReadHooks:
        """One set of hooks from the installed capabilities' (name, hooks); a slot filled twice
        is a `ValueError` naming both capabilities."""
        slots: dict[str, tuple[str, Any]] = {}
        for owner, hooks in named:
            for slot in ("row_scope", "projection", "cache"):
                value = getattr(hooks, slot)
                if value is None:
                    continue
                if slot in slots:
                    raise ValueError(
                        f"read hook {slot} is provided by both {slots[slot][0]} and {owner}"
                    )
                slots[slot] = (owner, value)
        return cls(**{slot: value for slot, (_, value) in slots.items()})


NO_READ_HOOKS = ReadHooks()
