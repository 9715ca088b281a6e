"""Indexes declared in entity metadata: their names, their DDL and their builds.

An admin declares an index with `indexed: true` on a field or an entry of the entity's
`indexes`. The admin transaction only records the wish (`record_wanted`: a `_index_builds` row in
state `building`); the index itself is built later by `reconcile`, on an autocommit connection of
its own, with `CREATE INDEX CONCURRENTLY`: PostgreSQL cannot run that inside a transaction, and a
plain `CREATE INDEX` would block every write to a large table for the length of the build.

Who builds, with several instances: whoever wins the index's session advisory lock
(`pg_try_advisory_lock`) on its building connection; the others skip it. A crash mid-build closes
that connection, which releases the lock and leaves the row in `building` and PostgreSQL's
half-built index marked invalid; the next `reconcile` anywhere (the periodic job, a restart, the
next admin change) wins the lock, drops the invalid index and builds it again. A build that fails
for a reason that would fail again (duplicates under a unique index, a column dropped by hand) is
dropped and recorded as `failed: <reason>`; it is tried again when the entity is saved again.
An index no entity declares any more is dropped (`DROP INDEX CONCURRENTLY`) and its row deleted.

Names: `rx_<table>_<fields>_<hash>` (at most 63 bytes, the hash covers the whole definition), so a
changed definition is a new index and the old one is dropped once the new one is ready.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from rocketd.db.introspect import SCHEMA
from rocketd.logging import get_logger
from rocketd.metadata.model import DELETED_AT, Entity, IndexSpec

log = get_logger("rocketd.db.declared_indexes")

__all__ = [
    "STATES_COLUMN",
    "DeclaredIndex",
    "change_notes",
    "declared_indexes",
    "forget_entity",
    "has_work",
    "reconcile",
    "record_wanted",
]

PREFIX: Final = "rx_"
_MAX_NAME_BYTES: Final = 63
_LOCK_PREFIX: Final = "rocketd:index:"
BUILDING: Final = "building"
READY: Final = "ready"
FAILED: Final = "failed"
DROPPING: Final = "dropping"
SIGNAL: Final = "indexes"  # the post-commit signal that wakes the builders


@dataclass(frozen=True)
class DeclaredIndex:
    """One index an entity asks for, as the database will have it."""

    name: str
    entity: str
    table: str
    spec: IndexSpec
    live_rows_only: bool  # soft delete: partial on `deleted_at IS NULL`, what lists read

    def definition(self) -> dict[str, Any]:
        return {**self.spec.to_json(), "partial": self.live_rows_only}

    def create_statement(self) -> sql.Composed:
        columns = sql.SQL(", ").join(
            sql.SQL("{} DESC").format(sql.Identifier(c.field))
            if c.descending
            else sql.Identifier(c.field)
            for c in self.spec.columns
        )
        statement = sql.SQL("CREATE {}INDEX CONCURRENTLY {} ON {} ({})").format(
            sql.SQL("UNIQUE ") if self.spec.unique else sql.SQL(""),
            sql.Identifier(self.name),
            sql.Identifier(SCHEMA, self.table),
            columns,
        )
        if self.live_rows_only:
            statement += sql.SQL(" WHERE {} IS NULL").format(sql.Identifier(DELETED_AT))
        return statement


def index_name(table: str, spec: IndexSpec, live_rows_only: bool) -> str:
    """`rx_<table>_<fields>_<10 hex>`, cut to 63 bytes before the hash (names are ASCII)."""
    fields = "_".join(("d" if c.descending else "") + c.field for c in spec.columns)
    key = f"{table}|{','.join(c.to_json() for c in spec.columns)}|{spec.unique}|{live_rows_only}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    readable = f"{PREFIX}{table}_{fields}"[: _MAX_NAME_BYTES - 11]
    return f"{readable}_{digest}"


def declared_indexes(entity: Entity) -> tuple[DeclaredIndex, ...]:
    return tuple(
        DeclaredIndex(
            index_name(entity.table, spec, entity.soft_delete),
            entity.name,
            entity.table,
            spec,
            entity.soft_delete,
        )
        for spec in entity.declared_indexes
    )


def change_notes(old: Entity | None, new: Entity) -> list[str]:
    """What a save changes in the declared indexes, as migration notes (the admin answer's
    `meta.migration`): the indexes it adds and those it drops."""
    before = {i.name: i for i in declared_indexes(old)} if old is not None else {}
    after = {i.name: i for i in declared_indexes(new)}
    notes = [
        f"index {_label(i)}: declared; built concurrently after this change (its state is in"
        f" the entity's admin answer)"
        for name, i in after.items()
        if name not in before
    ]
    notes += [
        f"index {_label(i)}: no longer declared; dropped concurrently after this change"
        for name, i in before.items()
        if name not in after
    ]
    return notes


def _label(index: DeclaredIndex) -> str:
    fields = ", ".join(c.to_json() for c in index.spec.columns)
    kind = "unique " if index.spec.unique else ""
    return f"{index.name} ({kind}{fields})"


def _lock_key(name: str) -> str:
    return _LOCK_PREFIX + name


# ------------------------------------------------------------------ the admin transaction side


async def record_wanted(conn: AsyncConnection[Any], entity: Entity) -> None:
    """In the admin transaction that saves `entity`: a `building` row for each index it declares
    that is not ready (a failed build gets another try), and `dropping` for the indexes of the
    entity it no longer declares. `reconcile` does the work after the commit."""
    wanted = declared_indexes(entity)
    for index in wanted:
        await conn.execute(
            "insert into _index_builds (name, entity, table_name, definition, state)"
            " values (%s, %s, %s, %s, 'building')"
            " on conflict (name) do update set entity = excluded.entity,"
            " state = case when _index_builds.state = 'ready' then 'ready' else 'building' end,"
            " error = null, updated_at = now()",
            (index.name, index.entity, index.table, Jsonb(index.definition())),
        )
    await forget_entity(conn, entity.name, keep=[i.name for i in wanted])


async def forget_entity(conn: AsyncConnection[Any], entity: str, keep: Sequence[str] = ()) -> None:
    """Mark the entity's declared indexes (but `keep`) for dropping (admin transaction side)."""
    await conn.execute(
        "update _index_builds set state = 'dropping', updated_at = now()"
        " where entity = %s and not (name = any(%s))",
        (entity, list(keep)),
    )


# A column of the entities' admin answer: each declared index of the entity, its definition and
# where its build stands (`building`, `ready`, `failed: <reason>`, `dropping`).
STATES_COLUMN: Final = sql.SQL(
    "coalesce((select jsonb_agg(jsonb_build_object('name', b.name) || b.definition"
    " || jsonb_build_object('state', case when b.state = 'failed'"
    " then 'failed: ' || coalesce(b.error, '') else b.state end) order by b.name)"
    " from _index_builds b where b.entity = {}.name), '[]'::jsonb)"
)


# ------------------------------------------------------------------------- the building side


@dataclass(frozen=True)
class _Row:
    name: str
    table: str
    definition: dict[str, Any]
    state: str


_CATALOGUE_SQL = """
select i.relname, ix.indisvalid
  from pg_index ix
  join pg_class i on i.oid = ix.indexrelid
  join pg_namespace n on n.oid = i.relnamespace
 where n.nspname = %s and i.relname = any(%s)
"""


async def _catalogue(conn: AsyncConnection[Any], names: Sequence[str]) -> dict[str, bool]:
    """Index name -> valid, for those of `names` that exist."""
    cur = await conn.execute(_CATALOGUE_SQL, (SCHEMA, list(names)))
    return {name: bool(valid) for name, valid in await cur.fetchall()}


async def _try_lock(conn: AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute(
        "select pg_try_advisory_lock(hashtextextended(%s, 0))", (_lock_key(name),)
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def _unlock(conn: AsyncConnection[Any], name: str) -> None:
    await conn.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_key(name),))


async def _drop(conn: AsyncConnection[Any], name: str) -> None:
    await conn.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(SCHEMA, name))
    )


async def _set_state(
    conn: AsyncConnection[Any], name: str, state: str, error: str | None = None
) -> None:
    await conn.execute(
        "update _index_builds set state = %s, error = %s, updated_at = now() where name = %s",
        (state, error, name),
    )


_WORK_SQL = """
select exists (
  select 1 from _index_builds b
   where b.state in ('building', 'dropping')
      or (b.state = 'ready' and not exists (
            select 1 from pg_index ix
              join pg_class i on i.oid = ix.indexrelid
              join pg_namespace n on n.oid = i.relnamespace
             where n.nspname = %s and i.relname = b.name and ix.indisvalid)))
"""


async def has_work(conn: AsyncConnection[Any]) -> bool:
    """Whether `reconcile` has anything to do (a build or drop pending, or a ready index gone):
    one cheap query on any connection, so the periodic sweep opens no building connection for
    an app with nothing to do."""
    cur = await conn.execute(_WORK_SQL, (SCHEMA,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def reconcile(conn: AsyncConnection[Any], entities: Iterable[Entity]) -> bool:
    """Bring the declared indexes of an app database in line with `entities` (its metadata).

    `conn` must be an autocommit connection used for nothing else meanwhile (it holds the
    advisory locks and runs the concurrent builds). Returns True when an index became ready or
    was dropped (the app's snapshot should be reloaded: list pages choose their SQL by the
    indexes they find)."""
    wanted = {i.name: i for e in entities for i in declared_indexes(e)}
    await conn.execute("set statement_timeout = 0")
    for index in wanted.values():  # declared by metadata written before this table existed
        await conn.execute(
            "insert into _index_builds (name, entity, table_name, definition)"
            " values (%s, %s, %s, %s) on conflict (name) do nothing",
            (index.name, index.entity, index.table, Jsonb(index.definition())),
        )
    cur = await conn.execute("select name, table_name, definition, state from _index_builds")
    rows = [_Row(*row) for row in await cur.fetchall()]
    present = await _catalogue(conn, [r.name for r in rows])
    changed = False
    for row in rows:
        if row.name not in wanted:
            changed |= await _retire(conn, row.name)
        elif row.state in (BUILDING, DROPPING) or (
            row.state == READY and not present.get(row.name)
        ):
            changed |= await _build(conn, wanted[row.name])
    return changed


async def _retire(conn: AsyncConnection[Any], name: str) -> bool:
    if not await _try_lock(conn, name):
        return False  # another instance is at it
    try:
        await _drop(conn, name)
        await conn.execute("delete from _index_builds where name = %s", (name,))
        log.info("declared index dropped", index=name)
    finally:
        await _unlock(conn, name)
    return True


async def _build(conn: AsyncConnection[Any], index: DeclaredIndex) -> bool:
    if not await _try_lock(conn, index.name):
        return False  # another instance (or task) is building it
    try:
        # Under the lock, look again: the build may have finished since the rows were read.
        cur = await conn.execute("select state from _index_builds where name = %s", (index.name,))
        row = await cur.fetchone()
        valid = (await _catalogue(conn, [index.name])).get(index.name)
        if row is None or row[0] == FAILED:
            return False
        if valid:
            await _set_state(conn, index.name, READY)
            return bool(row[0] != READY)
        if valid is False:  # left invalid by a build that crashed or failed
            await _drop(conn, index.name)
        await _set_state(conn, index.name, BUILDING)
        log.info("building declared index", index=index.name, table=index.table)
        try:
            await conn.execute(index.create_statement())
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or type(exc).__name__
            if exc.diag.message_detail:
                reason = f"{reason} ({exc.diag.message_detail})"
            await _drop(conn, index.name)  # the invalid leftover of the failed build
            await _set_state(conn, index.name, FAILED, reason)
            log.warning("declared index build failed", index=index.name, reason=reason)
            return False
        await _set_state(conn, index.name, READY)
        log.info("declared index ready", index=index.name)
        return True
    finally:
        await _unlock(conn, index.name)
