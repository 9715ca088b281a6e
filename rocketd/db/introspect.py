"""What a business table looks like right now: columns, indexes, names in use (schema `public`).

Read-only catalogue queries for the auto-migrator (`rocketd.db.migrator`). Every name travels as a
query parameter; nothing here writes. Types are reported in `format_type` spelling
(`integer`, `numeric(18,2)`, `timestamp with time zone`), the same spelling the migrator uses for
the column types it wants, so the two compare as plain strings.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

__all__ = [
    "SCHEMA",
    "ColumnInfo",
    "IndexInfo",
    "column_types",
    "index_column_lists",
    "index_leading_columns",
    "introspect_indexes",
    "introspect_table",
    "relation_names_in_use",
]

SCHEMA = "public"


@dataclass(frozen=True)
class ColumnInfo:
    """One column of an existing table."""

    name: str
    data_type: str  # format_type() text, e.g. 'integer', 'numeric(18,2)'
    not_null: bool = False
    has_default: bool = False  # a DEFAULT expression (identity columns report False)
    identity: bool = False  # GENERATED ... AS IDENTITY
    primary_key: bool = False  # the table's primary key is exactly this one column


@dataclass(frozen=True)
class IndexInfo:
    """One index of an existing table. `columns` holds "" for an expression column."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    partial: bool = False
    primary: bool = False
    constraint: bool = False  # backs a PRIMARY KEY / UNIQUE / EXCLUDE constraint

    @property
    def plain_columns(self) -> bool:
        """An index on bare columns (no expressions, no predicate)."""
        return not self.partial and all(self.columns)


_COLUMNS_SQL = """
select a.attname,
       format_type(a.atttypid, a.atttypmod),
       a.attnotnull,
       a.atthasdef,
       a.attidentity <> ''
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = %(schema)s
   and c.relname = %(table)s
   and c.relkind in ('r', 'p')
   and a.attnum > 0
   and not a.attisdropped
 order by a.attnum
"""

_TABLE_EXISTS_SQL = """
select 1
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = %(schema)s and c.relname = %(table)s and c.relkind in ('r', 'p')
"""

_INDEXES_SQL = """
select i.relname,
       array(select coalesce(a.attname::text, '')
               from unnest(ix.indkey::int2[]) with ordinality as k(attnum, ord)
               left join pg_attribute a on a.attrelid = ix.indrelid and a.attnum = k.attnum
              order by k.ord),
       ix.indisunique,
       ix.indpred is not null,
       ix.indisprimary,
       exists (select 1 from pg_constraint con where con.conindid = ix.indexrelid)
  from pg_index ix
  join pg_class i on i.oid = ix.indexrelid
  join pg_class t on t.oid = ix.indrelid
  join pg_namespace n on n.oid = t.relnamespace
 where n.nspname = %(schema)s and t.relname = %(table)s
 order by i.relname
"""

_NAMES_SQL = """
select c.relname
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = %(schema)s and c.relname = any(%(names)s)
"""


async def introspect_table(conn: AsyncConnection[Any], table: str) -> dict[str, ColumnInfo] | None:
    """The columns of table `public.{table}` in column order, or None when there is no such table
    (a view, sequence or index of that name is "no table": see `relation_names_in_use`)."""
    params = {"schema": SCHEMA, "table": table}
    cur = await conn.execute(_TABLE_EXISTS_SQL, params)
    if await cur.fetchone() is None:
        return None
    cur = await conn.execute(_COLUMNS_SQL, params)
    rows = await cur.fetchall()
    pk_columns = await _primary_key_columns(conn, table)
    single_pk = pk_columns[0] if len(pk_columns) == 1 else None
    return {
        name: ColumnInfo(
            name=name,
            data_type=data_type,
            not_null=bool(not_null),
            has_default=bool(has_default),
            identity=bool(identity),
            primary_key=name == single_pk,
        )
        for name, data_type, not_null, has_default, identity in rows
    }


async def introspect_indexes(conn: AsyncConnection[Any], table: str) -> tuple[IndexInfo, ...]:
    """Every index of table `public.{table}`, ordered by name (empty when the table is absent)."""
    cur = await conn.execute(_INDEXES_SQL, {"schema": SCHEMA, "table": table})
    return tuple(
        IndexInfo(
            name=name,
            columns=tuple(columns),
            unique=bool(unique),
            partial=bool(partial),
            primary=bool(primary),
            constraint=bool(constraint),
        )
        for name, columns, unique, partial, primary, constraint in await cur.fetchall()
    )


async def relation_names_in_use(conn: AsyncConnection[Any], names: Collection[str]) -> set[str]:
    """Those of `names` already used by a relation (table, view, index, sequence, ...) in the
    schema. Tables and indexes share one namespace in PostgreSQL, so a new index name must be
    checked against all of them."""
    if not names:
        return set()
    cur = await conn.execute(_NAMES_SQL, {"schema": SCHEMA, "names": sorted(set(names))})
    return {row[0] for row in await cur.fetchall()}


async def _primary_key_columns(conn: AsyncConnection[Any], table: str) -> Sequence[str]:
    for index in await introspect_indexes(conn, table):
        if index.primary:
            return index.columns
    return ()


_LEADING_SQL = """
select t.relname, a.attname
  from pg_index i
  join pg_class t on t.oid = i.indrelid
  join pg_namespace n on n.oid = t.relnamespace
  join pg_class ic on ic.oid = i.indexrelid
  join pg_am am on am.oid = ic.relam
  join pg_attribute a on a.attrelid = t.oid and a.attnum = i.indkey[0]
 where n.nspname = %(schema)s and t.relname = any(%(tables)s)
   and am.amname = 'btree' and i.indpred is null and i.indisvalid
"""


async def index_leading_columns(
    conn: AsyncConnection[Any], tables: Collection[str]
) -> dict[str, frozenset[str]]:
    """Per table of `tables`: the columns that lead a valid, non-partial btree index, i.e. the
    columns an ORDER BY can be answered from an index for."""
    cur = await conn.execute(_LEADING_SQL, {"schema": SCHEMA, "tables": list(tables)})
    leading: dict[str, set[str]] = {}
    for table, column in await cur.fetchall():
        leading.setdefault(table, set()).add(column)
    return {table: frozenset(columns) for table, columns in leading.items()}


# Valid btree indexes on plain columns, whole-table or partial on live rows only (the soft-delete
# predicate every list of such an entity carries), with their columns in order.
_COLUMN_LISTS_SQL = """
select t.relname,
       array(select a.attname::text
               from unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
               join pg_attribute a on a.attrelid = t.oid and a.attnum = k.attnum
              order by k.ord)
  from pg_index i
  join pg_class t on t.oid = i.indrelid
  join pg_namespace n on n.oid = t.relnamespace
  join pg_class ic on ic.oid = i.indexrelid
  join pg_am am on am.oid = ic.relam
 where n.nspname = %(schema)s and t.relname = any(%(tables)s)
   and am.amname = 'btree' and i.indisvalid and 0 <> all(i.indkey::int2[])
   and (i.indpred is null
        or pg_get_expr(i.indpred, i.indrelid) = '(deleted_at IS NULL)')
"""


async def index_column_lists(
    conn: AsyncConnection[Any], tables: Collection[str]
) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Per table of `tables`: the column lists of its btree indexes on plain columns (whole or
    partial on `deleted_at IS NULL`), so a list can tell whether an index serves its filter and
    sort together (`AppSnapshot.sort_columns`)."""
    cur = await conn.execute(_COLUMN_LISTS_SQL, {"schema": SCHEMA, "tables": list(tables)})
    lists: dict[str, list[tuple[str, ...]]] = {}
    for table, columns in await cur.fetchall():
        lists.setdefault(table, []).append(tuple(columns))
    return {table: tuple(found) for table, found in lists.items()}


_ALL_COLUMN_TYPES_SQL = """
select c.relname, a.attname, a.atttypid::regtype::text
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = %(schema)s and c.relname = any(%(tables)s) and c.relkind in ('r', 'p')
   and a.attnum > 0 and not a.attisdropped
"""


async def column_types(
    conn: AsyncConnection[Any], tables: Collection[str]
) -> dict[str, dict[str, str]]:
    """Per table of `tables`: column -> type name without modifiers (`numeric`,
    `timestamp with time zone`, `character varying`, ...)."""
    cur = await conn.execute(_ALL_COLUMN_TYPES_SQL, {"schema": SCHEMA, "tables": list(tables)})
    types: dict[str, dict[str, str]] = {}
    for table, column, type_name in await cur.fetchall():
        types.setdefault(table, {})[column] = type_name
    return types
