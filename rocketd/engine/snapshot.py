"""AppSnapshot: everything a request needs to know about an app's metadata, immutable.

The AppActor builds one on every reload and swaps it in one assignment; a request keeps the
snapshot it started with. The kernel's own part is the Registry (entities and relations) plus two
catalog reads (which columns lead an index, each table's column types). Every capability adds
its part under a typed `SnapshotKey` (like aiohttp's `web.AppKey`): `snapshot[RULE_BOOK]` is a
`RuleBook`, and a part that is not installed reads as its key's `empty` value. The kernel never
names a part: capabilities declare `SnapshotPart`s and the loader runs the installed ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection

from rocketd.db.introspect import column_types, index_column_lists, index_leading_columns
from rocketd.engine.metadata_admin import load_registry
from rocketd.metadata.registry import EMPTY_REGISTRY, Registry

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class SnapshotKey(Generic[T]):
    """The typed name of one part of the snapshot; `empty` is its value when nothing is loaded.

    Keys compare by identity: declare each once, in its capability's package."""

    name: str
    empty: T

    def __repr__(self) -> str:
        return f"<SnapshotKey {self.name}>"


def no_problems(part: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class SnapshotPart(Generic[T]):
    """How a capability loads its part: `load` reads its rows (after the Registry is built) and
    returns the frozen part; `problems` lists what it skipped as invalid (logged at reload)."""

    key: SnapshotKey[T]
    load: Callable[[AsyncConnection[Any], Registry], Awaitable[T]]
    problems: Callable[[T], tuple[str, ...]] = no_problems


@dataclass(frozen=True)
class AppSnapshot:
    registry: Registry
    parts: Mapping[SnapshotKey[Any], Any] = field(default_factory=dict)
    # table -> columns leading a btree index, read at load time (list pages choose their SQL
    # by it; an index created by hand is seen from the next reload on).
    sort_indexes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # table -> ((column, type name), ...) as the database has them at load time: list pages
    # have PostgreSQL write the records' JSON only for columns of the types rocketd expects.
    column_types: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # table -> the column lists of its btree indexes (whole, or partial on live rows).
    index_columns: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # Invalid metadata skipped while loading (logged by the AppActor).
    problems: tuple[str, ...] = ()

    def __getitem__(self, key: SnapshotKey[T]) -> T:
        value: T = self.parts.get(key, key.empty)
        return value

    def indexed_columns(self, table: str) -> frozenset[str]:
        return self.sort_indexes.get(table, frozenset())

    def sort_columns(self, table: str, equal: Collection[str]) -> frozenset[str]:
        """The columns an index can hand rows out in order of, once the `equal` columns are
        fixed by `eq` filters: `indexed_columns`, plus the column after a prefix of `equal`
        columns (`(category, price)` serves `filter[category]=x&sort=price`)."""
        leading = self.indexed_columns(table)
        if not equal:
            return leading
        more = set(leading)
        for columns in self.index_columns.get(table, ()):
            for column in columns:
                if column not in equal:
                    more.add(column)
                    break
        return frozenset(more)

    def table_columns(self, table: str) -> tuple[tuple[str, str], ...]:
        return self.column_types.get(table, ())


EMPTY_SNAPSHOT = AppSnapshot(registry=EMPTY_REGISTRY)


async def load_snapshot(
    conn: AsyncConnection[Any], parts: Sequence[SnapshotPart[Any]] = ()
) -> AppSnapshot:
    """Read the app's metadata and build its snapshot with the installed `parts`."""
    registry = await load_registry(conn)
    loaded: dict[SnapshotKey[Any], Any] = {}
    problems = list(registry.problems)
    for part in parts:
        value = await part.load(conn, registry)
        loaded[part.key] = value
        problems.extend(part.problems(value))
    tables = [entity.table for entity in registry.entities.values()]
    sort_indexes = await index_leading_columns(conn, tables)
    index_columns = await index_column_lists(conn, tables)
    types = await column_types(conn, tables)
    return AppSnapshot(
        registry=registry,
        parts=loaded,
        sort_indexes=sort_indexes,
        index_columns=index_columns,
        column_types={table: tuple(sorted(columns.items())) for table, columns in types.items()},
        problems=tuple(problems),
    )
