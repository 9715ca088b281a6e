"""SQL text for entity tables and join tables: the only place in rocketd that writes it.

Every builder returns a `psycopg.sql.Composed` made of fixed SQL keywords, identifiers (always
through `sql.Identifier`, after a name check) and `%s` placeholders; values are never inlined.
The builders are generic over metadata (an `Entity`, or a table name plus column names) so the
read path and the write path share them.

Composing and rendering SQL costs more than executing a prepared statement, so callers render a
statement once per *shape* and keep the bytes: `entity_sql(entity).statements.render(key, conn,
build)` caches per entity (`StatementCache`), and `entity_sql` itself is cached per Entity object.
psycopg prepares a statement server-side after it has seen the same bytes `prepare_threshold`
times, which only happens when the text for one shape never changes.

Placeholders are positional (`%s`); each builder documents the order of its parameters.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, LiteralString, TypeVar

from psycopg import sql
from psycopg.abc import AdaptContext

from rocketd.metadata.model import DELETED_AT, Entity

# Metadata names are `^[a-z][a-z0-9_]{0,62}$`; the leading underscore is for rocketd's own
# aliases (`_key`, `_rn`, `_s`, `_t`, `_j`), which therefore never collide with user columns.
_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Operators of `condition()`. Each value operator takes exactly one `%s`; `in` / `not_in` take an
# array (a Python list). `false` / `true` take none and exist so that an empty `in` list can be
# expressed without sending an untyped empty array.
_VALUE_OPERATORS: Final[dict[str, LiteralString]] = {
    "eq": "{} = %s",
    "neq": "{} <> %s",
    "gt": "{} > %s",
    "gte": "{} >= %s",
    "lt": "{} < %s",
    "lte": "{} <= %s",
    "in": "{} = ANY(%s)",
    "not_in": "{} <> ALL(%s)",
    "like": "{} LIKE %s",
    "ilike": "{} ILIKE %s",
}
_NULL_OPERATORS: Final[dict[str, LiteralString]] = {
    "is_null": "{} IS NULL",
    "not_null": "{} IS NOT NULL",
}
OPERATORS: Final = frozenset(_VALUE_OPERATORS) | frozenset(_NULL_OPERATORS)

_K = TypeVar("_K")
_V = TypeVar("_V")


# An extra condition on an entity's rows (`%s` placeholders) and its parameters: a caller's row
# filter, applied to lists, counts, lookups and includes.
RowFilter = tuple[sql.Composable, Sequence[Any]]
# Per included entity: its row filter, or None; the second argument is the table alias the
# condition must qualify columns with (None: unqualified).
IncludeWhere = Callable[[Entity, str | None], RowFilter | None]


def ident(name: str, qualifier: str | None = None) -> sql.Identifier:
    """A quoted column/table identifier, optionally qualified (`"_t"."title"`). Names outside the
    metadata name syntax are refused: they can only come from a bug upstream of here."""
    if not _NAME_RE.fullmatch(name) or (
        qualifier is not None and not _NAME_RE.fullmatch(qualifier)
    ):
        raise ValueError(f"not a valid SQL name: {name!r}")
    return sql.Identifier(qualifier, name) if qualifier else sql.Identifier(name)


def column_list(names: Iterable[str], *, qualifier: str | None = None) -> sql.Composed:
    """`"a", "b", "c"`."""
    return sql.SQL(", ").join(ident(n, qualifier) for n in names)


def condition(column: str, op: str = "eq", *, qualifier: str | None = None) -> sql.Composed:
    """One predicate on a column: `"c" = %s`, `"c" = ANY(%s)`, `"c" IS NULL`, ... (see OPERATORS).

    `neq` and `not_in` follow SQL semantics: NULL columns never match them.
    """
    template = _VALUE_OPERATORS.get(op) or _NULL_OPERATORS.get(op)
    if template is None:
        raise ValueError(f"unknown operator: {op!r}")
    return sql.SQL(template).format(ident(column, qualifier))


def live_condition(entity: Entity, qualifier: str | None = None) -> sql.Composed | None:
    """`"deleted_at" IS NULL` for soft-delete entities, None otherwise."""
    return condition(DELETED_AT, "is_null", qualifier=qualifier) if entity.soft_delete else None


def where_clause(conditions: Iterable[sql.Composable | None]) -> sql.Composable:
    """` WHERE a AND b` (leading space), or nothing when there is no condition."""
    parts = [c for c in conditions if c is not None]
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)


def order_by(keys: Sequence[tuple[str, bool]], *, qualifier: str | None = None) -> sql.Composable:
    """` ORDER BY "a" DESC, "b"` from (column, descending) pairs; nothing when empty."""
    if not keys:
        return sql.SQL("")
    items = [
        ident(name, qualifier) + sql.SQL(" DESC") if descending else ident(name, qualifier)
        for name, descending in keys
    ]
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(items)


# --- per-entity precomputation -----------------------------------------------------------------


class StatementCache:
    """Rendered statement bytes by shape key, bounded (past `max_size` shapes, render each time)."""

    def __init__(self, max_size: int = 256) -> None:
        self._max_size = max_size
        self._items: dict[Hashable, bytes] = {}

    def render(
        self, key: Hashable, context: AdaptContext | None, build: Callable[[], sql.Composable]
    ) -> bytes:
        text = self._items.get(key)
        if text is None:
            text = build().as_bytes(context)
            if len(self._items) < self._max_size:
                self._items[key] = text
        return text

    def __len__(self) -> int:
        return len(self._items)


class IdentityCache(Generic[_K, _V]):
    """Values derived from immutable objects, keyed by the object's identity, least recently used
    evicted. Entities are compared by identity, not equality: they are immutable, a registry
    snapshot reuses them, and their hash would need hashable field defaults. The cache holds the
    object itself, so an id is never reused while its entry lives."""

    def __init__(self, build: Callable[[_K], _V], max_size: int = 1024) -> None:
        self._build = build
        self._max_size = max_size
        self._items: OrderedDict[int, tuple[_K, _V]] = OrderedDict()

    def get(self, obj: _K) -> _V:
        key = id(obj)
        hit = self._items.get(key)
        if hit is not None and hit[0] is obj:
            self._items.move_to_end(key)
            return hit[1]
        value = self._build(obj)
        self._items[key] = (obj, value)
        if len(self._items) > self._max_size:
            self._items.popitem(last=False)
        return value


@dataclass(frozen=True, eq=False)
class EntitySql:
    """SQL fragments of one entity, computed once per Entity object."""

    entity: Entity
    table: sql.Identifier
    output_columns: tuple[str, ...]  # record keys: declared fields (+ hidden deleted_at)
    declared_columns: tuple[str, ...]
    select_list: sql.Composed  # output_columns
    declared_select_list: sql.Composed
    live: sql.Composed | None  # "deleted_at" IS NULL for soft-delete entities
    statements: StatementCache = field(default_factory=StatementCache)


def _build_entity_sql(entity: Entity) -> EntitySql:
    declared = tuple(f.name for f in entity.fields)
    return EntitySql(
        entity=entity,
        table=ident(entity.table),
        output_columns=entity.output_columns,
        declared_columns=declared,
        select_list=column_list(entity.output_columns),
        declared_select_list=column_list(declared),
        live=live_condition(entity),
    )


_ENTITY_SQL: Final = IdentityCache(_build_entity_sql)


def entity_sql(entity: Entity) -> EntitySql:
    """The cached `EntitySql` of this Entity object."""
    return _ENTITY_SQL.get(entity)


# --- reads --------------------------------------------------------------------------------------


def _select_list(es: EntitySql, columns: Sequence[str] | None) -> sql.Composable:
    return es.select_list if columns is None else column_list(columns)


def build_select(
    entity: Entity,
    *,
    columns: Sequence[str] | None = None,
    conditions: Sequence[sql.Composable] = (),
    order: Sequence[tuple[str, bool]] = (),
    limit: bool = False,
    offset: bool = False,
    live: bool = True,
    for_update: bool = False,
) -> sql.Composed:
    """`SELECT cols FROM t WHERE [live AND] conditions ORDER BY ... [LIMIT %s] [OFFSET %s]
    [FOR UPDATE]`.

    Parameters: those of `conditions` in order, then the limit, then the offset. `columns`
    defaults to the record columns (`entity.output_columns`).
    """
    es = entity_sql(entity)
    parts: list[sql.Composable] = [sql.SQL("SELECT "), _select_list(es, columns)]
    parts += [sql.SQL(" FROM "), es.table]
    parts.append(where_clause([es.live if live else None, *conditions]))
    parts.append(order_by(order))
    if limit:
        parts.append(sql.SQL(" LIMIT %s"))
    if offset:
        parts.append(sql.SQL(" OFFSET %s"))
    if for_update:
        parts.append(sql.SQL(" FOR UPDATE"))
    return sql.Composed(parts)


def build_count(
    target: Entity | str, conditions: Sequence[sql.Composable] = (), *, live: bool = True
) -> sql.Composed:
    """`SELECT count(*) FROM t WHERE ...`; an Entity adds its live condition unless `live=False`,
    a table name (e.g. a join table) gets only `conditions`."""
    if isinstance(target, Entity):
        es = entity_sql(target)
        table: sql.Composable = es.table
        all_conditions = [es.live if live else None, *conditions]
    else:
        table = ident(target)
        all_conditions = list(conditions)
    return sql.SQL("SELECT count(*) FROM ") + table + where_clause(all_conditions)


def build_list_rows(
    entity: Entity,
    *,
    conditions: Sequence[sql.Composable] = (),
    order: Sequence[tuple[str, bool]] = (),
    record_json: sql.Composable | None = None,
) -> sql.Composed:
    """A list page without its total (`?total=false`, keyset pages): the page's rows only.

    With `record_json` (`wire_sql.record_json(..., "_p")`) each row is the record's wire JSON
    as UTF-8 bytes. Parameters: those of `conditions`, then the limit, then the offset.
    """
    page = build_select(entity, conditions=conditions, order=order, limit=True, offset=True)
    if record_json is None:
        return page
    return sql.Composed(
        [
            sql.SQL("SELECT convert_to(row_to_json(_r)::text, 'UTF8') FROM ("),
            page,
            sql.SQL(") AS _p, LATERAL "),
            record_json,
            sql.SQL(" AS _r"),
            order_by(order, qualifier="_p"),
        ]
    )


def keyset_condition(
    order: Sequence[tuple[str, bool]], nulls: Sequence[bool], never_null: str
) -> tuple[sql.Composable, tuple[int, ...]]:
    """The rows after a cursor in `order` (PostgreSQL's: NULLs last ascending, first
    descending): (condition, which cursor value each `%s` takes, in order). `nulls[i]` says the
    cursor's value for key i is NULL (the statement's shape depends on it); `never_null` is the
    primary key (the last key, never NULL, so its tests need no NULL branch).

    `(k1 after v1) OR (k1 = v1 AND k2 after v2) OR ...`, plus, for a descending or non-null
    first key, a plain range on it (`k1 <= v1`) that an index scan can start from.
    """
    terms: list[sql.Composable] = []
    slots: list[int] = []
    equal: list[sql.Composable] = []
    equal_slots: list[int] = []
    for i, ((name, descending), null) in enumerate(zip(order, nulls, strict=True)):
        column = ident(name)
        after: sql.Composable | None
        if null:
            after = None if not descending else sql.SQL("{} IS NOT NULL").format(column)
            after_slots: list[int] = []
        elif descending:
            after, after_slots = sql.SQL("{} < %s").format(column), [i]
        elif name == never_null:
            after, after_slots = sql.SQL("{} > %s").format(column), [i]
        else:
            after = sql.SQL("({} > %s OR {} IS NULL)").format(column, column)
            after_slots = [i]
        if after is not None:
            terms.append(sql.SQL("(") + sql.SQL(" AND ").join([*equal, after]) + sql.SQL(")"))
            slots += [*equal_slots, *after_slots]
        if null:
            equal.append(sql.SQL("{} IS NULL").format(column))
        else:
            equal.append(sql.SQL("{} = %s").format(column))
            equal_slots.append(i)
    condition: sql.Composable = (
        sql.SQL("(") + sql.SQL(" OR ").join(terms) + sql.SQL(")") if terms else sql.SQL("FALSE")
    )
    (first, descending), first_null = order[0], nulls[0]
    if not first_null and (descending or first == never_null):
        bound = sql.SQL("{} <= %s" if descending else "{} >= %s").format(ident(first))
        condition = bound + sql.SQL(" AND ") + condition
        slots = [0, *slots]
    return condition, tuple(slots)


def build_list_page(
    entity: Entity,
    *,
    conditions: Sequence[sql.Composable] = (),
    order: Sequence[tuple[str, bool]] = (),
    scan_once: bool = False,
    record_json: sql.Composable | None = None,
) -> sql.Composed:
    """One statement for a list page and its total: the page's rows, each followed by the total
    as its last column; an empty page is one row of NULLs carrying the total.

    `scan_once=False` (the sort can come from an index): `(SELECT count(*) ...) LEFT JOIN LATERAL
    (page)`, so PostgreSQL plans the count and the page as it would two statements (the page
    walks the index and stops after LIMIT rows). `scan_once=True` (no index serves the sort, so
    the page has to visit every match anyway): the matches are collected once in a MATERIALIZED
    CTE that is counted and top-N sorted, one scan instead of two (docs/benchmarks.md has the
    measurements of both forms).

    With `record_json` (`wire_sql.record_json(..., "_p")`) each row is the record's wire JSON as
    UTF-8 bytes (NULL for the empty page's row) instead of its columns.

    Parameters: those of `conditions` (twice when `scan_once` is false: count, then page), then
    the limit, then the offset.
    """
    es = entity_sql(entity)
    where = where_clause([es.live, *conditions])
    if scan_once:
        head: list[sql.Composable] = [
            sql.SQL("WITH _m AS MATERIALIZED (SELECT "),
            es.select_list,
            sql.SQL(" FROM "),
            es.table,
            where,
            sql.SQL(") "),
        ]
        counted: list[sql.Composable] = [sql.SQL("_m")]
        paged: list[sql.Composable] = [sql.SQL("SELECT * FROM _m")]
    else:
        head = []
        counted = [es.table, where]
        paged = [sql.SQL("SELECT "), es.select_list, sql.SQL(" FROM "), es.table, where]
    if record_json is None:
        columns: sql.Composable = sql.SQL("_p.*")
        lateral: list[sql.Composable] = []
    else:
        columns = sql.SQL(
            "CASE WHEN {} IS NULL THEN NULL ELSE convert_to(row_to_json(_r)::text, 'UTF8') END"
        ).format(ident(entity.primary_key.field, "_p"))
        lateral = [sql.SQL(", LATERAL "), record_json, sql.SQL(" AS _r")]
    return sql.Composed(
        [
            *head,
            sql.SQL("SELECT "),
            columns,
            sql.SQL(", _c._total FROM (SELECT count(*) AS _total FROM "),
            *counted,
            sql.SQL(") AS _c LEFT JOIN LATERAL ("),
            *paged,
            order_by(order),
            sql.SQL(" LIMIT %s OFFSET %s) AS _p ON TRUE"),
            *lateral,
            order_by(order, qualifier="_p"),
        ]
    )


def build_lookup(
    entity: Entity,
    columns: Sequence[str],
    *,
    conditions: Sequence[sql.Composable] = (),
    for_update: bool = False,
) -> sql.Composed:
    """One live row whose first matching column in `columns` equals the value given for it:
    `... WHERE ("slug" = %s OR "id" = %s) ORDER BY ("slug" = %s) IS TRUE DESC LIMIT 1`.

    Parameters: one value per column, then `conditions`' parameters, then (when there are several
    columns) the first column's value again for the preference order.
    """
    if not columns:
        raise ValueError("build_lookup needs at least one column")
    es = entity_sql(entity)
    match = sql.SQL(" OR ").join(condition(c) for c in columns)
    if len(columns) > 1:
        match = sql.SQL("(") + match + sql.SQL(")")
    parts: list[sql.Composable] = [
        sql.SQL("SELECT "),
        es.select_list,
        sql.SQL(" FROM "),
        es.table,
        where_clause([match, es.live, *conditions]),
    ]
    if len(columns) > 1:
        parts.append(sql.SQL(" ORDER BY ({}) IS TRUE DESC").format(condition(columns[0])))
    parts.append(sql.SQL(" LIMIT 1"))
    if for_update:
        parts.append(sql.SQL(" FOR UPDATE"))
    return sql.Composed(parts)


def build_select_by_keys(
    entity: Entity,
    key_column: str,
    *,
    columns: Sequence[str] | None = None,
    conditions: Sequence[sql.Composable] = (),
) -> sql.Composed:
    """Live rows whose `key_column` is in an array, at most N per key value, lowest PK first;
    the key value comes back as the last column.

    Parameters: the key array (list), those of `conditions` (ANDed before the per-key limit, e.g.
    a permission row filter), N. Used for includes: one statement for all parents.
    """
    es = entity_sql(entity)
    key = ident(key_column)
    inner = sql.SQL(
        "SELECT {cols}, {key} AS _key, row_number() OVER (PARTITION BY {key} ORDER BY {pk}) AS _rn"
        " FROM {table}"
    ).format(
        cols=_select_list(es, columns),
        key=key,
        pk=ident(entity.primary_key.field),
        table=es.table,
    ) + where_clause([sql.SQL("{} = ANY(%s)").format(key), es.live, *conditions])
    return (
        sql.SQL("SELECT ")
        + column_list(es.output_columns if columns is None else columns)
        + sql.SQL(", _key FROM (")
        + inner
        + sql.SQL(") AS _s WHERE _rn <= %s ORDER BY _key, _rn")
    )


def build_select_through_join(
    target: Entity,
    *,
    join_table: str,
    source_join_key: str,
    target_join_key: str,
    columns: Sequence[str] | None = None,
    conditions: Sequence[sql.Composable] = (),
) -> sql.Composed:
    """Live target rows linked through a join table to any of an array of source keys, at most N
    per source key, lowest target PK first; the source key comes back as the last column.

    Parameters: the source key array (list), those of `conditions` (on target columns qualified
    with `_t`), N.
    """
    es = entity_sql(target)
    names = es.output_columns if columns is None else tuple(columns)
    source_key = ident(source_join_key, "_j")
    target_pk = ident(target.primary_key.field, "_t")
    inner = sql.SQL(
        "SELECT {cols}, {skey} AS _key,"
        " row_number() OVER (PARTITION BY {skey} ORDER BY {tpk}) AS _rn"
        " FROM {join} AS _j JOIN {table} AS _t ON {tpk} = {tkey}"
    ).format(
        cols=column_list(names, qualifier="_t"),
        skey=source_key,
        tpk=target_pk,
        join=ident(join_table),
        table=es.table,
        tkey=ident(target_join_key, "_j"),
    ) + where_clause(
        [
            sql.SQL("{} = ANY(%s)").format(source_key),
            live_condition(target, qualifier="_t"),
            *conditions,
        ]
    )
    return (
        sql.SQL("SELECT ")
        + column_list(names)
        + sql.SQL(", _key FROM (")
        + inner
        + sql.SQL(") AS _s WHERE _rn <= %s ORDER BY _key, _rn")
    )


# --- writes -------------------------------------------------------------------------------------


def _returning(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(" RETURNING ") + column_list(columns) if columns else sql.SQL("")


def build_insert(
    table: str,
    columns: Sequence[str],
    *,
    now_columns: Sequence[str] = (),
    rows: int = 1,
    on_conflict_do_nothing: bool = False,
    returning: Sequence[str] = (),
) -> sql.Composed:
    """`INSERT INTO t ("a", "b", "c") VALUES (%s, %s, now())[, (...)] [ON CONFLICT DO NOTHING]
    [RETURNING ...]`; `INSERT INTO t DEFAULT VALUES` when there is no column at all.

    Parameters: the values of `columns`, row after row (`rows` rows). `now_columns` (the `auto`
    timestamps) are set to the transaction's `now()` and take no parameter.
    """
    if rows < 1:
        raise ValueError("build_insert needs at least one row")
    names = [*columns, *now_columns]
    parts: list[sql.Composable] = [sql.SQL("INSERT INTO "), ident(table)]
    if not names:
        if rows != 1:
            raise ValueError("a multi-row insert needs at least one column")
        parts.append(sql.SQL(" DEFAULT VALUES"))
    else:
        one_row = (
            sql.SQL("(")
            + sql.SQL(", ").join(
                [sql.SQL("%s")] * len(columns) + [sql.SQL("now()")] * len(now_columns)
            )
            + sql.SQL(")")
        )
        parts += [
            sql.SQL(" ("),
            column_list(names),
            sql.SQL(") VALUES "),
            sql.SQL(", ").join([one_row] * rows),
        ]
    if on_conflict_do_nothing:
        parts.append(sql.SQL(" ON CONFLICT DO NOTHING"))
    parts.append(_returning(returning))
    return sql.Composed(parts)


def build_update(
    table: str,
    set_columns: Sequence[str],
    *,
    now_columns: Sequence[str] = (),
    conditions: Sequence[sql.Composable] = (),
    returning: Sequence[str] = (),
) -> sql.Composed:
    """`UPDATE t SET "a" = %s, "u" = now() WHERE conditions [RETURNING ...]`.

    Parameters: the values of `set_columns`, then the conditions' parameters. Add
    `live_condition(entity)` to `conditions` to leave soft-deleted rows alone.
    """
    assignments = [sql.SQL("{} = %s").format(ident(c)) for c in set_columns]
    assignments += [sql.SQL("{} = now()").format(ident(c)) for c in now_columns]
    if not assignments:
        raise ValueError("build_update needs at least one column to set")
    return (
        sql.SQL("UPDATE ")
        + ident(table)
        + sql.SQL(" SET ")
        + sql.SQL(", ").join(assignments)
        + where_clause(conditions)
        + _returning(returning)
    )


def build_delete(
    table: str, conditions: Sequence[sql.Composable], *, returning: Sequence[str] = ()
) -> sql.Composed:
    """`DELETE FROM t WHERE conditions [RETURNING ...]` (conditions are required: no accidental
    whole-table delete). Parameters: the conditions' parameters."""
    if not conditions:
        raise ValueError("build_delete needs at least one condition")
    return sql.SQL("DELETE FROM ") + ident(table) + where_clause(conditions) + _returning(returning)


def build_soft_delete(
    table: str, conditions: Sequence[sql.Composable], *, returning: Sequence[str] = ()
) -> sql.Composed:
    """`UPDATE t SET "deleted_at" = now() WHERE conditions AND "deleted_at" IS NULL`.
    Parameters: the conditions' parameters."""
    if not conditions:
        raise ValueError("build_soft_delete needs at least one condition")
    return build_update(
        table,
        (),
        now_columns=(DELETED_AT,),
        conditions=[*conditions, condition(DELETED_AT, "is_null")],
        returning=returning,
    )


def render(statement: sql.Composable, context: AdaptContext | None = None) -> str:
    """The statement's text, for logs and tests."""
    return statement.as_string(context)


__all__ = [
    "OPERATORS",
    "EntitySql",
    "IdentityCache",
    "StatementCache",
    "build_count",
    "build_delete",
    "build_insert",
    "build_lookup",
    "build_select",
    "build_select_by_keys",
    "build_select_through_join",
    "build_soft_delete",
    "build_update",
    "column_list",
    "condition",
    "entity_sql",
    "ident",
    "live_condition",
    "order_by",
    "render",
]
